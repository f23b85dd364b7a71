/* For tests: the BTF of test_opensnoop.h, as a user makes it for `perfstream record --event-type event
 * --btf FILE` (clang -g -c -target bpf). A type gets into BTF only when something refers to it: this
 * pointer does. */
#include <linux/types.h>
#include "test_opensnoop.h"

struct event *snoop_event_type;
