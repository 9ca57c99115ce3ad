// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The XDP program of vtap's af-xdp uplinks: every frame received on queue
// N goes to the XDP socket in slot N of `vtap_xsks`, or, when the slot is
// empty, on to the kernel's stack as if no program were attached.
//
// build.rs compiles it with clang (-target bpf); uplink/xdp.rs loads it
// with aya. Self-contained on purpose: only <linux/bpf.h>, no libbpf
// headers, so building vtap needs clang and the kernel's UAPI headers only.

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// bpf_redirect_map is helper 51 (include/uapi/linux/bpf.h).
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} vtap_xsks SEC(".maps");

SEC("xdp")
int vtap_xsk_redirect(struct xdp_md *ctx)
{
	// The low bits of the flags are the action when the lookup fails
	// (Linux 5.3+): no socket on this queue, the frame goes on.
	return bpf_redirect_map(&vtap_xsks, ctx->rx_queue_index, XDP_PASS);
}

// The same, declared able to see frames in several buffers (Linux 5.18+),
// so that a driver keeps XDP on at an MTU above a page (a veth allows no
// larger MTU otherwise) and hands such frames to sockets that take them in
// several chunks (XDP_USE_SG, Linux 6.6+).
SEC("xdp.frags")
int vtap_xsk_redirect_mb(struct xdp_md *ctx)
{
	return bpf_redirect_map(&vtap_xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
