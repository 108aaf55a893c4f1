// SPDX-License-Identifier: GPL-2.0-only
/* A frags-aware XDP program (SEC("xdp.frags")): it records the whole frame's length. */
#include "xdp_test_helpers.h"

DECLARE_XSKS_MAP;

__u64 last_frame_length; /* .bss: all the frame's buffers together */

SEC("xdp.frags")
int whole_frames(struct xdp_md *ctx)
{
	last_frame_length = bpf_xdp_get_buff_len(ctx);
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
