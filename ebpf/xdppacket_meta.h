/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The metadata trailer xdppacket reads before each received frame.
 *
 * An XDP program that calls bpf_xdp_adjust_meta() and fills this struct
 * directly in front of the frame's data gives the library the frame's arrival
 * time (CaptureInfo.timestamp_ns). Metadata of its own goes in front of the
 * trailer: meta_len counts all of it, the trailer included, and the library
 * returns the part before the trailer as CaptureInfo.metadata. Include this
 * header in your own program (OptXDPProgram) to do the same.
 */
#ifndef XDPPACKET_META_H
#define XDPPACKET_META_H

#include <linux/types.h>

#define XDPPACKET_META_MAGIC 0x50504458 /* "XDPP" in little-endian memory */

struct xdppacket_meta {
	__u64 rx_time_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC nanoseconds */
	__u32 meta_len;   /* bytes of metadata before the frame, this trailer included */
	__u32 magic;      /* XDPPACKET_META_MAGIC: the trailer is there */
};

/* What the shipped program (xdpsock_kern.c) puts in front of each frame: the trailer,
 * then a classic pcap record header (nanosecond variant) directly before the frame, so
 * that a capture writes header and frame from the UMEM as one piece. 32 bytes, the most
 * XDP metadata some kernels allow (xdp_metalen_invalid). Its trailer's rx_time_ns is
 * already CLOCK_REALTIME (bpf_ktime_get_ns() plus the offset the library keeps in the
 * program), the time the record header holds, so the library reads each frame's time
 * without converting it. A custom program writes the trailer alone, directly before
 * the frame, as above. */
struct xdppacket_pcap_record {
	__u32 ts_sec;  /* CLOCK_REALTIME of arrival: seconds */
	__u32 ts_nsec; /* and nanoseconds */
	__u32 caplen;  /* bytes of the frame in this buffer */
	__u32 len;     /* bytes of the whole frame */
};

struct xdppacket_capture_meta {
	struct xdppacket_meta trailer;
	struct xdppacket_pcap_record record;
};

#endif
