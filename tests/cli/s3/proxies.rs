//! TCP proxies in front of the S3 server: a relay that shows every chunk
//! each way to a closure, [`FaultyProxy`] (cuts part uploads),
//! [`GateProxy`] (holds responses until opened, cuts some mid-body) and
//! [`SwitchProxy`] (passes, cuts or holds requests, as the test says).

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Takes one from `left` if any is left.
pub(super) fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
        .is_ok()
}

/// A TCP relay in front of the server on `server_port`; returns its port.
/// On each connection, every chunk towards the server is first shown to
/// `up` and every chunk towards the client to `down`, with the bytes the
/// connection carried that way so far (this chunk included) and the
/// chunk; `false` cuts the connection.
pub(super) fn relay<U, D>(server_port: u16, up: U, down: D) -> u16
where
    U: Fn(usize, &[u8]) -> bool + Send + Sync + 'static,
    D: Fn(usize, &[u8]) -> bool + Send + Sync + 'static,
{
    fn pump(mut from: TcpStream, mut to: TcpStream, each: &dyn Fn(usize, &[u8]) -> bool) {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; 16 * 1024];
        let mut carried = 0usize;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            carried += n;
            if !each(carried, &buf[..n]) || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (up, down) = (Arc::new(up), Arc::new(down));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (up, down) = (up.clone(), down.clone());
            std::thread::spawn(move || pump(client, server, &*up));
            std::thread::spawn(move || pump(s2, c2, &*down));
        }
    });
    port
}

/// A TCP proxy in front of the server that cuts connections once they
/// have carried 1 MiB towards the server (that is, during a part upload),
/// `budget` times; small requests (start, complete, abort) pass.
pub(super) struct FaultyProxy {
    pub(super) port: u16,
    pub(super) cut: Arc<AtomicUsize>,
}

impl FaultyProxy {
    pub(super) fn start(server_port: u16, budget: usize) -> FaultyProxy {
        let cut = Arc::new(AtomicUsize::new(0));
        let left = AtomicUsize::new(budget);
        let counter = cut.clone();
        let up = move |carried: usize, _: &[u8]| {
            if carried > 1 << 20 && take_one(&left) {
                counter.fetch_add(1, Ordering::SeqCst);
                return false;
            }
            true
        };
        let port = relay(server_port, up, |_, _: &[u8]| true);
        FaultyProxy { port, cut }
    }

    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A TCP proxy in front of the server that holds every response byte
/// after the first `after` (towards the client) until it is opened: a
/// command reading through it can be paused mid-read, deterministically.
/// It also cuts `cuts` responses after their first 256 KiB.
pub(super) struct GateProxy {
    pub(super) port: u16,
    pub(super) gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    pub(super) holding: Arc<std::sync::atomic::AtomicBool>,
    pub(super) cut: Arc<AtomicUsize>,
}

impl GateProxy {
    pub(super) fn start(server_port: u16, after: usize) -> GateProxy {
        GateProxy::start_cutting(server_port, after, 0)
    }

    pub(super) fn start_cutting(server_port: u16, after: usize, cuts: usize) -> GateProxy {
        let cut = Arc::new(AtomicUsize::new(0));
        let left = AtomicUsize::new(cuts);
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let holding = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let carried = AtomicUsize::new(0);
        let (g, h, counter) = (gate.clone(), holding.clone(), cut.clone());
        let down = move |here: usize, chunk: &[u8]| {
            let n = chunk.len();
            if here > 256 << 10 && take_one(&left) {
                counter.fetch_add(1, Ordering::SeqCst);
                return false;
            }
            if carried.fetch_add(n, Ordering::SeqCst) + n > after {
                let (lock, cv) = &*g;
                let mut open = lock.lock().unwrap();
                while !*open {
                    h.store(true, Ordering::SeqCst);
                    open = cv.wait(open).unwrap();
                }
            }
            true
        };
        let port = relay(server_port, |_, _: &[u8]| true, down);
        GateProxy {
            port,
            gate,
            holding,
            cut,
        }
    }

    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a response is held.
    pub(super) fn wait_holding(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.holding.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "nothing reached the gate");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(super) fn open(&self) {
        let (lock, cv) = &*self.gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// What a [`SwitchProxy`] does with requests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Relays everything.
    Pass,
    /// Cuts every connection at its next chunk towards the server: the
    /// store is down.
    Cut,
    /// Cuts the part uploads only (the upload starts, its part fails, its
    /// abort passes).
    CutParts,
    /// Holds the part uploads (every other request passes) until the
    /// mode changes; then passes or cuts them as the new mode says.
    HoldParts,
}

/// A TCP proxy in front of the server whose [`Mode`] the test switches.
pub(super) struct SwitchProxy {
    pub(super) port: u16,
    mode: Arc<(std::sync::Mutex<Mode>, std::sync::Condvar)>,
    /// Part uploads held so far.
    pub(super) held: Arc<AtomicUsize>,
    /// Connections cut so far.
    pub(super) cut: Arc<AtomicUsize>,
}

impl SwitchProxy {
    pub(super) fn start(server_port: u16) -> SwitchProxy {
        let mode = Arc::new((std::sync::Mutex::new(Mode::Pass), std::sync::Condvar::new()));
        let (held, cut) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (m, h, c) = (mode.clone(), held.clone(), cut.clone());
        let up = move |_: usize, chunk: &[u8]| {
            // A part upload's request line is in the chunk that starts it.
            let part = chunk.windows(11).any(|w| w == b"partNumber=");
            let (lock, cv) = &*m;
            let mut now = lock.lock().unwrap();
            if part && *now == Mode::HoldParts {
                h.fetch_add(1, Ordering::SeqCst);
                while *now == Mode::HoldParts {
                    now = cv.wait(now).unwrap();
                }
            }
            let pass = match *now {
                Mode::Pass | Mode::HoldParts => true,
                Mode::Cut => false,
                Mode::CutParts => !part,
            };
            if !pass {
                c.fetch_add(1, Ordering::SeqCst);
            }
            pass
        };
        let port = relay(server_port, up, |_, _: &[u8]| true);
        SwitchProxy {
            port,
            mode,
            held,
            cut,
        }
    }

    pub(super) fn set(&self, mode: Mode) {
        let (lock, cv) = &*self.mode;
        *lock.lock().unwrap() = mode;
        cv.notify_all();
    }

    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
