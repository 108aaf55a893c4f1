// SPDX-License-Identifier: GPL-2.0-only
/*
 * A custom program that puts 8 bytes of metadata of its own ("CUSTOM" plus the rx
 * queue and a running count) in front of xdppacket's trailer (ebpf/xdppacket_meta.h),
 * so the library returns them as CaptureInfo.metadata. Frames whose first byte is
 * 0xEF (a multicast address: a veth's random MAC never starts so) get no metadata at
 * all: the library must then use the ring time.
 */
#include "xdp_test_helpers.h"
#include "../../ebpf/xdppacket_meta.h"

static long (*bpf_xdp_adjust_meta)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_meta;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

DECLARE_XSKS_MAP;

struct custom {
	char tag[6];
	__u8 queue;
	__u8 count;
};

__u8 frames_seen;

SEC("xdp")
int xdp_with_metadata(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 1 <= data_end && *(__u8 *)data != 0xEF &&
	    bpf_xdp_adjust_meta(ctx, -(int)(sizeof(struct custom) + sizeof(struct xdppacket_meta))) == 0) {
		struct custom *custom = (void *)(long)ctx->data_meta;
		struct xdppacket_meta *trailer = (void *)(custom + 1);

		data = (void *)(long)ctx->data;
		if ((void *)(trailer + 1) <= data) {
			__builtin_memcpy(custom->tag, "CUSTOM", 6);
			custom->queue = ctx->rx_queue_index;
			custom->count = frames_seen++;
			trailer->rx_time_ns = bpf_ktime_get_ns();
			trailer->meta_len = sizeof(*custom) + sizeof(*trailer);
			trailer->magic = XDPPACKET_META_MAGIC;
		}
	}
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
