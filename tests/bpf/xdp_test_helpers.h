/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few libbpf conventions the test programs need, spelt out (as in
 * ebpf/xdpsock_kern.c) so that only clang and the kernel's UAPI headers build them.
 */
#ifndef XDP_TEST_HELPERS_H
#define XDP_TEST_HELPERS_H

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* BPF helpers are called by number: the verifier replaces the call target. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) =
	(void *)BPF_FUNC_map_update_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)BPF_FUNC_xdp_get_buff_len;

/* Rx queue index -> AF_XDP socket, as every program used with xdppacket declares it. */
#define DECLARE_XSKS_MAP                              \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_XSKMAP);    \
		__uint(max_entries, 64);              \
		__type(key, __u32);                   \
		__type(value, __u32);                 \
	} xsks_map SEC(".maps")

#endif
