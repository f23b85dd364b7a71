"""python3 -m perfstream FILE [EVENT]: reads a recording and prints its events (count, columns, first rows)
and lost notices; with EVENT, that event's DataFrame as CSV on standard output."""
import sys

import pandas as pd

from . import RecordingError, read


def main(argv):
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        rec = read(argv[1])
    except (RecordingError, OSError) as e:
        print("perfstream: %s" % e, file=sys.stderr)
        return 1
    for p in rec.problems:
        print("perfstream: %s" % p, file=sys.stderr)
    if len(argv) == 3:
        if argv[2] not in rec:
            print("perfstream: no event %r (there are: %s)" % (argv[2], ", ".join(rec.events)), file=sys.stderr)
            return 1
        rec[argv[2]].to_csv(sys.stdout)
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(rec)
        for name, df in rec.events.items():
            print("\n%s: %d records\n%s" % (name, len(df), df.head()))
        print("\nlost notices: %d\n%s" % (len(rec.lost), rec.lost.head()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
