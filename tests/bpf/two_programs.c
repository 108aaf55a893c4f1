// SPDX-License-Identifier: GPL-2.0-only
/* Two XDP programs in one object: OptXDPProgram(path, program=NAME) chooses one. */
#include "xdp_test_helpers.h"

DECLARE_XSKS_MAP;

__u32 calls_of_first;   /* .bss, shared by both programs */
__u32 calls_of_second;

SEC("xdp")
int first(struct xdp_md *ctx)
{
	calls_of_first += 1;
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

SEC("xdp")
int second(struct xdp_md *ctx)
{
	calls_of_second += 1;
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_DROP);
}

char _license[] SEC("license") = "GPL";
