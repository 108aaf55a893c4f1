// SPDX-License-Identifier: MIT
/*
 * xsk_l2fwd: the C baseline of cmd/l2fwd_bench.py. It does what the Python examples
 * examples/l2fwd_1link.py and examples/l2fwd_2link.py do, on queue 0, written the way a
 * C programmer would with libxdp's <xdp/xsk.h>:
 *
 *   1link (-i IF):          every frame goes back out of IF, source and destination
 *                           MAC addresses swapped in place;
 *   2link (-i IF1 -j IF2):  every frame goes out of the other interface, unchanged,
 *                           both ways. One UMEM is shared by both sockets, so a frame
 *                           is forwarded by handing its descriptor over: no copy.
 *
 * Copy mode (XDP_COPY), need_wakeup, batches of up to 64 frames (--batch N), native XDP by
 * default (--mode skb for generic), as the Python examples run on veth. libxdp's own program loader goes
 * through its dispatcher, which this kernel refuses (EPERM, see KERNEL_NOTES): the
 * program is ours, five instructions (redirect to the socket of the frame's rx queue,
 * pass when there is none), attached with a BPF link so it goes when the process does.
 *
 * Usage: xsk_l2fwd -i IF [-j IF2] [--mode drv|skb] [--batch N] [--duration S]
 * Prints "xsk_l2fwd ready" once forwarding, and one totals line per interface at the end
 * (SIGINT, SIGTERM or --duration), in the examples' format.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <xdp/xsk.h>

#define FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define FRAMES_PER_PORT 2048 /* as the Python sockets: 1024 for rx, 1024 for tx */
#define RING_SIZE 1024       /* the Python sockets' default ring size */
#define DEFAULT_BATCH 64 /* frames per read at most, as the Python examples */
#define IDLE_POLL_MS 100
#define MAX_PORTS 2

struct port {
	const char *ifname;
	struct xsk_socket *xsk;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	int map_fd;
	int link_fd;
	unsigned long long rx_packets, rx_bytes, tx_packets, tx_bytes;
	unsigned int outstanding; /* submitted to tx, not yet completed */
};

static struct port ports[MAX_PORTS];
static int nports;
static void *umem_area;
static __u64 free_frames[MAX_PORTS * FRAMES_PER_PORT];
static unsigned int nfree;
static volatile sig_atomic_t stop;
static unsigned int batch = DEFAULT_BATCH;

static void die(const char *what, int err)
{
	fprintf(stderr, "xsk_l2fwd: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* r2 = ctx->rx_queue_index; return bpf_redirect_map(&map, r2, XDP_PASS). */
static int load_program(int map_fd)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
		  .off = offsetof(struct xdp_md, rx_queue_index) },
		{ .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1,
		  .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd },
		{ 0 }, /* the upper half of the 64-bit immediate */
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "xsk_l2fwd", "Dual MIT/GPL", insns,
			       sizeof(insns) / sizeof(insns[0]), NULL);

	if (fd < 0)
		die("loading the XDP program", errno);
	return fd;
}

static void open_port(struct port *p, struct xsk_umem *umem, __u32 xdp_flags)
{
	struct xsk_socket_config cfg = {
		.rx_size = RING_SIZE,
		.tx_size = RING_SIZE,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	LIBBPF_OPTS(bpf_link_create_opts, link_opts, .flags = xdp_flags);
	int ifindex = if_nametoindex(p->ifname);
	int prog_fd, err;

	if (!ifindex)
		die(p->ifname, errno);
	err = xsk_socket__create_shared(&p->xsk, p->ifname, 0, umem, &p->rx, &p->tx, &p->fill,
					&p->comp, &cfg);
	if (err)
		die("xsk_socket__create_shared", err);
	p->map_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "xsks_map", 4, 4, 1, NULL);
	if (p->map_fd < 0)
		die("creating the XSKMAP", errno);
	prog_fd = load_program(p->map_fd);
	err = xsk_socket__update_xskmap(p->xsk, p->map_fd);
	if (err)
		die("xsk_socket__update_xskmap", err);
	p->link_fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &link_opts);
	if (p->link_fd < 0)
		die("attaching the XDP program (is one attached already?)", errno);
	close(prog_fd); /* the link holds it */
}

/* Copy mode sends only in sendto(); each call sends up to 32 frames. */
static void kick_tx(struct port *p)
{
	if (!xsk_ring_prod__needs_wakeup(&p->tx))
		return;
	if (sendto(xsk_socket__fd(p->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 &&
	    errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != ENETDOWN)
		die("sendto (tx wakeup)", errno);
}

static void complete_tx(struct port *p)
{
	__u32 idx, i, n;

	if (!p->outstanding)
		return;
	kick_tx(p);
	n = xsk_ring_cons__peek(&p->comp, RING_SIZE, &idx);
	for (i = 0; i < n; i++)
		free_frames[nfree++] = *xsk_ring_cons__comp_addr(&p->comp, idx + i) & ~(__u64)(FRAME_SIZE - 1);
	xsk_ring_cons__release(&p->comp, n);
	p->outstanding -= n;
	p->tx_packets += n;
}

static void refill(struct port *p)
{
	__u32 idx, i, n = xsk_prod_nb_free(&p->fill, nfree);

	if (n > nfree)
		n = nfree;
	if (!n || xsk_ring_prod__reserve(&p->fill, n, &idx) != n)
		return;
	for (i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&p->fill, idx + i) = free_frames[--nfree];
	xsk_ring_prod__submit(&p->fill, n);
}

static void swap_macs(unsigned char *frame)
{
	unsigned char mac[6];

	memcpy(mac, frame, 6);
	memcpy(frame, frame + 6, 6);
	memcpy(frame + 6, mac, 6);
}

/* Move up to `batch` received frames of `in` to the tx ring of `out`; returns how many. */
static unsigned int forward(struct port *in, struct port *out, int swap)
{
	__u32 idx_rx, idx_tx, i, n = xsk_ring_cons__peek(&in->rx, batch, &idx_rx);

	if (!n)
		return 0;
	while (xsk_ring_prod__reserve(&out->tx, n, &idx_tx) != n) {
		complete_tx(out);
		if (stop)
			return 0;
	}
	for (i = 0; i < n; i++) {
		const struct xdp_desc *rx = xsk_ring_cons__rx_desc(&in->rx, idx_rx + i);
		struct xdp_desc *tx = xsk_ring_prod__tx_desc(&out->tx, idx_tx + i);

		if (swap)
			swap_macs(xsk_umem__get_data(umem_area, rx->addr));
		tx->addr = rx->addr;
		tx->len = rx->len;
		in->rx_bytes += rx->len;
		out->tx_bytes += rx->len;
	}
	xsk_ring_prod__submit(&out->tx, n);
	xsk_ring_cons__release(&in->rx, n);
	in->rx_packets += n;
	out->outstanding += n;
	kick_tx(out);
	return n;
}

static void print_totals(void)
{
	for (int i = 0; i < nports; i++) {
		struct port *p = &ports[i];
		struct xdp_statistics stats = { 0 };
		socklen_t len = sizeof(stats);

		getsockopt(xsk_socket__fd(p->xsk), SOL_XDP, XDP_STATISTICS, &stats, &len);
		printf("total %s rx_packets=%llu rx_bytes=%llu tx_packets=%llu tx_bytes=%llu "
		       "rx_dropped=%llu rx_ring_full=%llu\n",
		       p->ifname, p->rx_packets, p->rx_bytes, p->tx_packets, p->tx_bytes,
		       (unsigned long long)stats.rx_dropped, (unsigned long long)stats.rx_ring_full);
	}
	fflush(stdout);
}

static double monotonic_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: xsk_l2fwd -i IF [-j IF2] [--mode drv|skb] [--batch N (1-%d)] [--duration S]\n", RING_SIZE);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interface", required_argument, NULL, 'i' },
		{ "interface2", required_argument, NULL, 'j' },
		{ "mode", required_argument, NULL, 'm' },
		{ "duration", required_argument, NULL, 'd' },
		{ "batch", required_argument, NULL, 'b' },
		{ 0 },
	};
	struct xsk_umem_config umem_cfg = {
		.fill_size = RING_SIZE,
		.comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
	};
	__u32 xdp_flags = XDP_FLAGS_DRV_MODE;
	double duration = 0;
	struct xsk_umem *umem;
	struct pollfd fds[MAX_PORTS];
	double deadline;
	size_t size;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "i:j:", longopts, NULL)) != -1) {
		if (opt == 'i')
			ports[0].ifname = optarg;
		else if (opt == 'j')
			ports[1].ifname = optarg;
		else if (opt == 'm' && !strcmp(optarg, "drv"))
			xdp_flags = XDP_FLAGS_DRV_MODE;
		else if (opt == 'm' && !strcmp(optarg, "skb"))
			xdp_flags = XDP_FLAGS_SKB_MODE;
		else if (opt == 'd' && (duration = atof(optarg)) > 0)
			continue;
		else if (opt == 'b' && atoi(optarg) > 0 && atoi(optarg) <= RING_SIZE)
			batch = (unsigned int)atoi(optarg);
		else
			usage();
	}
	if (!ports[0].ifname || optind != argc)
		usage();
	nports = ports[1].ifname ? 2 : 1;

	size = (size_t)nports * FRAMES_PER_PORT * FRAME_SIZE;
	umem_area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (umem_area == MAP_FAILED)
		die("mmap of the UMEM", errno);
	err = xsk_umem__create(&umem, umem_area, size, &ports[0].fill, &ports[0].comp, &umem_cfg);
	if (err)
		die("xsk_umem__create", err);
	for (nfree = 0; nfree < (unsigned int)nports * FRAMES_PER_PORT; nfree++)
		free_frames[nfree] = (__u64)nfree * FRAME_SIZE;
	for (int i = 0; i < nports; i++) {
		open_port(&ports[i], umem, xdp_flags);
		refill(&ports[i]);
		fds[i] = (struct pollfd){ .fd = xsk_socket__fd(ports[i].xsk), .events = POLLIN };
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	deadline = monotonic_seconds() + duration;
	printf("xsk_l2fwd ready: %s mode on %s%s%s\n", nports == 2 ? "2link" : "1link",
	       ports[0].ifname, nports == 2 ? " and " : "", nports == 2 ? ports[1].ifname : "");
	fflush(stdout);

	while (!stop) {
		unsigned int moved = nports == 2 ? forward(&ports[0], &ports[1], 0) +
							   forward(&ports[1], &ports[0], 0)
						 : forward(&ports[0], &ports[0], 1);
		unsigned int outstanding = 0;

		for (int i = 0; i < nports; i++) {
			complete_tx(&ports[i]);
			refill(&ports[i]);
			outstanding += ports[i].outstanding;
		}
		if (!moved && !outstanding)
			poll(fds, nports, IDLE_POLL_MS);
		if (duration > 0 && monotonic_seconds() >= deadline)
			break;
	}
	print_totals();
	for (int i = 0; i < nports; i++) {
		close(ports[i].link_fd);
		close(ports[i].map_fd);
		xsk_socket__delete(ports[i].xsk);
	}
	xsk_umem__delete(umem);
	munmap(umem_area, size);
	return 0;
}
