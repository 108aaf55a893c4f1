// SPDX-License-Identifier: GPL-2.0
/*
 * xdppacket's XDP program: hand each frame to the AF_XDP socket bound to the
 * rx queue it arrived on, and let frames of queues with no socket continue
 * to the kernel stack.
 *
 * Built with clang alone (see the Makefile): the few libbpf conventions it
 * needs (SEC, the BTF map-definition macros, the helper's number) are spelt
 * out here so that only clang and the kernel's UAPI headers are required.
 * xdppacket's own loader reads the result (xdppacket/_bpf_object.py).
 */
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

/* A BTF map definition encodes each number as the length of an array that a
 * pointer member points to, and the key/value types as the pointee types. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* BPF helpers are called by number: the verifier replaces the call target. */
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) =
	(void *)BPF_FUNC_redirect_map;
static long (*bpf_xdp_adjust_meta)(struct xdp_md *ctx, int delta) =
	(void *)BPF_FUNC_xdp_adjust_meta;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)BPF_FUNC_xdp_get_buff_len;

#include "xdppacket_meta.h"

/* Rx queue index -> AF_XDP socket; the loader resizes it to the queue count. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

/* CLOCK_REALTIME - CLOCK_MONOTONIC in nanoseconds, kept current by the library (BPF has
 * no wall clock): the arrival time the program writes (trailer and pcap record header)
 * is bpf_ktime_get_ns() plus this. */
__u64 xdppacket_realtime_offset_ns = 0;
/* Set when a frame went to the socket without the metadata (a driver that refuses
 * bpf_xdp_adjust_meta): the bytes in front of its data are then stale, and the library
 * stops trusting the pcap record headers there. */
__u32 xdppacket_metadata_missing = 0;

/* with_lengths: fill in the record header's lengths, which takes bpf_xdp_get_buff_len()
 * (Linux 5.18+; data_end - data would need CAP_PERFMON). Without it they stay zero and the
 * library writes no record straight from the UMEM (xdp_sock_compat, for older kernels). */
static inline __attribute__((always_inline)) int redirect_to_socket(struct xdp_md *ctx, int with_lengths)
{
	/* The arrival time goes into the frame's XDP metadata, which copy mode copies into
	 * the UMEM just before the frame (see xdppacket_meta.h), with a pcap record header
	 * directly in front of the frame. A driver without metadata support refuses the
	 * adjustment: the frame then goes without, and the library uses the time it reads
	 * the ring. */
	int written = 0;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct xdppacket_capture_meta)) == 0) {
		void *data = (void *)(long)ctx->data;
		struct xdppacket_capture_meta *meta = (void *)(long)ctx->data_meta;

		if ((void *)(meta + 1) <= data) {
			__u64 realtime = bpf_ktime_get_ns() + xdppacket_realtime_offset_ns;
			__u32 seconds = realtime / 1000000000ULL;
			/* The whole frame; a multi-buffer frame's (xdp.frags) record is not used. */
			__u32 length = with_lengths ? bpf_xdp_get_buff_len(ctx) : 0;

			meta->trailer.rx_time_ns = realtime;
			meta->trailer.meta_len = sizeof(*meta);
			meta->trailer.magic = XDPPACKET_META_MAGIC;
			meta->record.ts_sec = seconds;
			meta->record.ts_nsec = realtime - (__u64)seconds * 1000000000ULL;
			meta->record.caplen = length;
			meta->record.len = length;
			written = 1;
		}
	}
	if (!written)
		xdppacket_metadata_missing = 1;
	/* The low bits of the flags argument are the action taken when the
	 * queue has no socket in the map: pass the frame on to the stack. */
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

SEC("xdp")
int xdp_sock_prog(struct xdp_md *ctx)
{
	return redirect_to_socket(ctx, 1);
}

/* The same program, declared frags-aware (loaded with BPF_F_XDP_HAS_FRAGS) for sockets
 * bound with XDP_USE_SG (OptMultiBuffer): the kernel then hands it frames spread over
 * several buffers instead of dropping them. It only touches the first buffer's head. */
SEC("xdp.frags")
int xdp_sock_prog_frags(struct xdp_md *ctx)
{
	return redirect_to_socket(ctx, 1);
}

/* What the library loads where the kernel refuses xdp_sock_prog (before Linux 5.18): the
 * same metadata, its record lengths left zero. */
SEC("xdp")
int xdp_sock_compat(struct xdp_md *ctx)
{
	return redirect_to_socket(ctx, 0);
}

char _license[] SEC("license") = "GPL";
