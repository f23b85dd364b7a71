/* For tests: the record of test_opensnoop.bpf.c, shaped like libbpf-tools' older opensnoop.h. The BPF
 * program only ever holds a `struct event` on its stack, so clang leaves the struct out of the object's
 * BTF; test_opensnoop_btf.c compiles this header with clang -g -c to give `perfstream record --btf` a BTF
 * that has it. Includes nothing itself: the includer provides __u32 and friends. */
#ifndef PERFSTREAM_TEST_OPENSNOOP_H
#define PERFSTREAM_TEST_OPENSNOOP_H

#define TASK_COMM_LEN 16
#define SNOOP_NAME_MAX 255
#define SNOOP_TAG_LEN 8
#define INVALID_UID ((__u32)-1)

enum snoop_outcome {
	SNOOP_ANY = 0,     /* as a filter (targ_outcome): every call */
	SNOOP_OPENED = 1,
	SNOOP_FAILED = 2,
};

struct snoop_path {
	__u32 len;                   /* bytes of pathes used, the NUL included */
	char pathes[SNOOP_NAME_MAX];
};

struct event {
	__u64 ts;
	__s32 pid;
	__u32 uid;
	__s32 ret;
	__s32 flags;
	enum snoop_outcome outcome;
	__s64 args[3];               /* openat's dfd, flags, mode as the call passed them */
	char comm[TASK_COMM_LEN];
	char tag[SNOOP_TAG_LEN];     /* the global `tag`: what --set wrote */
	struct snoop_path fname;
};

#endif
