//! iceoryx2 (the Rust crate) as a contender in the busy-polling round trip of the `limits`
//! bench (built with `--features iceoryx2`).
//!
//! iceoryx2 has no pipe: each direction is a publish-subscribe service of `[u8; 64]`
//! whose publisher waits when the subscriber's buffer is full (`RetryUntilDelivered`, so
//! nothing is dropped), and a receiver busy-polls `receive()`, which returns `None` while
//! nothing has arrived (a blocking receive would add an event service and its system
//! calls). A sample is loaned, written in place and sent: iceoryx2's zero-copy path.
//!
//! Nodes are made in the process that uses them, after the fork: an [`IoxEnd`] holds only
//! its service names until its first use. Both sides then agree that both directions are
//! connected (the parent pings until the child answers), so that no measured message
//! meets a port that is not connected yet; the first byte of every payload is a tag, and
//! the measured loops skip anything but [`DATA`].

use crate::ends::End;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use std::time::{Duration, Instant};

type Msg = [u8; 64];

const READY: u8 = 1;
const GO: u8 = 2;
/// The tag of a measured message.
pub const DATA: u8 = 3;

struct Ports {
    _node: Node<ipc::Service>,
    publisher: Publisher<ipc::Service, Msg, ()>,
    subscriber: Subscriber<ipc::Service, Msg, ()>,
}

/// One end: publishes on `out`, subscribes to `into`; connected on first use.
pub struct IoxEnd {
    out: String,
    into: String,
    /// The parent pings until answered; the child answers.
    leads: bool,
    ports: Option<Ports>,
}

/// Two ends (parent's, child's) on services named after this process and `tag`.
pub fn pair(tag: &str) -> (IoxEnd, IoxEnd) {
    let prefix = format!("shmpipe-bench/{}/{tag}", std::process::id());
    let (down, up) = (format!("{prefix}/down"), format!("{prefix}/up"));
    (
        IoxEnd {
            out: down.clone(),
            into: up.clone(),
            leads: true,
            ports: None,
        },
        IoxEnd {
            out: up,
            into: down,
            leads: false,
            ports: None,
        },
    )
}

impl IoxEnd {
    fn ports(&mut self) -> &Ports {
        if self.ports.is_none() {
            set_log_level(LogLevel::Error);
            let node = NodeBuilder::new()
                .signal_handling_mode(SignalHandlingMode::Disabled)
                .create::<ipc::Service>()
                .unwrap();
            let service = |name: &str| {
                node.service_builder(&name.try_into().unwrap())
                    .publish_subscribe::<Msg>()
                    .enable_safe_overflow(false)
                    .subscriber_max_buffer_size(16)
                    .open_or_create()
                    .unwrap()
            };
            let (out, into) = (service(&self.out), service(&self.into));
            let publisher = out
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .unwrap();
            let subscriber = into.subscriber_builder().buffer_size(16).create().unwrap();
            self.ports = Some(Ports {
                _node: node,
                publisher,
                subscriber,
            });
            self.connect();
        }
        self.ports.as_ref().unwrap()
    }

    /// The handshake: the leader sends `READY` until an answer comes, then `GO`; the
    /// other side answers every `READY` until `GO`.
    fn connect(&mut self) {
        let leads = self.leads;
        if leads {
            loop {
                self.send_tag(READY);
                if self.recv_tag(Some(Duration::from_millis(2))) == Some(READY) {
                    break;
                }
            }
            self.send_tag(GO);
        } else {
            loop {
                match self.recv_tag(None) {
                    Some(READY) => self.send_tag(READY),
                    Some(GO) => break,
                    _ => {}
                }
            }
        }
    }

    fn send_tag(&mut self, tag: u8) {
        let mut msg = [0u8; 64];
        msg[0] = tag;
        let p = self.ports.as_ref().unwrap();
        let sample = p.publisher.loan_uninit().unwrap().write_payload(msg);
        sample.send().unwrap();
    }

    /// Busy-polls for the next sample's tag (`None` once `patience` runs out).
    fn recv_tag(&mut self, patience: Option<Duration>) -> Option<u8> {
        let start = Instant::now();
        let p = self.ports.as_ref().unwrap();
        loop {
            if let Some(sample) = p.subscriber.receive().unwrap() {
                return Some(sample.payload()[0]);
            }
            if patience.is_some_and(|d| start.elapsed() > d) {
                return None;
            }
        }
    }
}

impl End for IoxEnd {
    fn send(&mut self, msg: &[u8]) {
        let mut payload = [0u8; 64];
        payload.copy_from_slice(msg);
        payload[0] = DATA;
        let sample = self
            .ports()
            .publisher
            .loan_uninit()
            .unwrap()
            .write_payload(payload);
        sample.send().unwrap();
    }

    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        let subscriber = &self.ports().subscriber;
        loop {
            if let Some(sample) = subscriber.receive().unwrap() {
                let payload = sample.payload();
                if payload[0] == DATA {
                    scratch[..64].copy_from_slice(payload);
                    return 64;
                }
            }
        }
    }
}
