//! Micro-benchmarks of the data path's pure parts (criterion):
//!
//! * `ring`: one descriptor through the driver ring and back — add, publish,
//!   the device side (rust-vmm `virtio-queue`) pops and completes it, the
//!   driver reaps it. Per descriptor, in bursts of 64.
//! * `header`: `virtio_net_hdr` parse + serialise and the offload decision
//!   for one TCP super-frame.
//! * `gso`: a 64 000-byte TCP/IPv4 super-frame segmented in software at MSS
//!   1448 with full checksums (toward an interface without offloads).
//! * `gro`: the 45 segments of that frame coalesced back into one (toward an
//!   interface with TSO).
//!
//!     cargo bench -p vtap --bench dataplane
//!
//! No network, no root: everything runs on buffers in memory.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use virtio_queue::QueueT;
use vm_memory::GuestAddress;

use vtap::datapath::vnet::{self, VnetHdr};
use vtap::offload::{self, Caps, Egress, Frame};
use vtap::tun::offload as tunf;
use vtap::virtq::{Arena, DriverQueue, Segment};

const PAYLOAD: usize = 64_000;
const MSS: u16 = 1448;

/// A TCP/IPv4 super-frame (198.18.0.1 -> 198.18.0.2) as a TSO tap hands it over.
fn super_frame() -> Frame {
    let payload: Vec<u8> = (0..PAYLOAD)
        .map(|i| (i * 7 % 251).to_le_bytes()[0])
        .collect();
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 5201, 1_000_000, 64240)
        .ack(1)
        .psh();
    let mut data = Vec::with_capacity(b.size(PAYLOAD));
    b.write(&mut data, &payload).expect("build");
    Frame {
        hdr: VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: MSS,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        },
        data,
    }
}

fn ring(c: &mut Criterion) {
    const BURST: u16 = 64;
    let arena = Arena::new(1 << 20).expect("arena");
    let mut q = DriverQueue::new(&arena, 256, false, false).expect("queue");
    let mut dev = q
        .addrs()
        .device_queue(256, false, arena.mem())
        .expect("device queue");
    let buf = arena.alloc(2048, 64).expect("buffer");
    let seg = [Segment {
        addr: GuestAddress(buf.0),
        len: 2048,
        device_writes: true,
    }];
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(u64::from(BURST)));
    g.bench_function(
        "add+publish+device pop/complete+reap, per burst of 64",
        |b| {
            b.iter(|| {
                for _ in 0..BURST {
                    q.add(&seg).expect("add");
                }
                q.publish().expect("publish");
                while let Some(chain) = dev.pop_descriptor_chain(arena.mem()) {
                    dev.add_used(arena.mem(), chain.head_index(), 60)
                        .expect("used");
                }
                while let Some(done) = q.pop_used().expect("pop used") {
                    black_box(done);
                }
            });
        },
    );
    g.finish();
}

fn header(c: &mut Criterion) {
    let f = super_frame();
    let caps = Caps::from_mask(tunf::CSUM | tunf::TSO4 | tunf::TSO6, false, false);
    let wire = f.hdr.to_bytes();
    c.bench_function("header: parse + classify + serialise", |b| {
        b.iter(|| {
            let h = VnetHdr::parse(black_box(&wire));
            let a = offload::classify(&caps, &h, black_box(&f.data));
            black_box((a, h.to_bytes()))
        });
    });
}

fn gso_and_gro(c: &mut Criterion) {
    let input = [super_frame()];
    let none = Caps::from_mask(0, false, false);
    let mut eg = Egress::default();
    let mut g = c.benchmark_group("offload");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    g.bench_function(
        "gso: 64000 B TCP4 super-frame -> 45 segments, full checksums",
        |b| {
            b.iter(|| {
                eg.prepare(&none, black_box(&input), [0]);
                black_box(eg.tx_frames(&input).len())
            });
        },
    );
    eg.prepare(&none, &input, [0]);
    let segments = eg.to_frames(&input);
    assert_eq!(segments.len(), PAYLOAD.div_ceil(usize::from(MSS)));
    let tso = Caps::from_mask(tunf::CSUM | tunf::TSO4 | tunf::TSO6, true, false);
    let mut eg2 = Egress::default();
    g.bench_function("gro: 45 segments -> one super-frame", |b| {
        b.iter(|| {
            eg2.prepare(&tso, black_box(&segments), 0..segments.len());
            black_box(eg2.tx_frames(&segments).len())
        });
    });
    eg2.prepare(&tso, &segments, 0..segments.len());
    assert_eq!(
        eg2.tx_frames(&segments).len(),
        1,
        "coalesced into one frame"
    );
    g.finish();
}

criterion_group!(benches, ring, header, gso_and_gro);
criterion_main!(benches);
