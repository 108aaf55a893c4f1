// SPDX-License-Identifier: GPL-2.0-only
/*
 * A custom XDP program with global variables and maps of several kinds, for
 * tests/integration/test_custom_program.py: it counts what it sees in .bss,
 * .data, a hash map and a per-CPU array, and answers with a .rodata constant.
 */
#include "xdp_test_helpers.h"

DECLARE_XSKS_MAP;

/* Frame length -> how many frames of that length were seen. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} lengths SEC(".maps");

/* Index 0: frames seen on this CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu_frames SEC(".maps");

/* A value the test sets from Python: 16 bytes, not an integer. */
struct flow_key {
	__u8 addresses[12];
	__u32 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct flow_key);
} flows SEC(".maps");

__u64 frames;                         /* .bss */
__s32 last_length = -1;               /* .data */
__u64 bytes_seen = 7;                 /* .data */
const volatile __u32 verdict = XDP_PASS; /* .rodata: the action for queues with no socket */
const volatile char banner[6] = "hello"; /* .rodata, not an integer */

SEC("xdp")
int count_frames(struct xdp_md *ctx)
{
	__u32 length = ctx->data_end - ctx->data;
	__u32 zero = 0;
	__u64 one = 1, *count;

	__sync_fetch_and_add(&frames, 1);
	__sync_fetch_and_add(&bytes_seen, length);
	last_length = length;

	count = bpf_map_lookup_elem(&lengths, &length);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&lengths, &length, &one, BPF_NOEXIST);

	count = bpf_map_lookup_elem(&per_cpu_frames, &zero);
	if (count)
		*count += 1;

	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, verdict);
}

char _license[] SEC("license") = "GPL";
