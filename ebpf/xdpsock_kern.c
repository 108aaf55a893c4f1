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

/* Rx queue index -> AF_XDP socket; the loader resizes it to the queue count. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

SEC("xdp")
int xdp_sock_prog(struct xdp_md *ctx)
{
	/* The low bits of the flags argument are the action taken when the
	 * queue has no socket in the map: pass the frame on to the stack. */
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
