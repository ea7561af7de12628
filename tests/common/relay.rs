//! A TCP relay between a store and the PostgreSQL server that a test can hold: what either
//! side sends through it waits, as over a stalled network or to a suspended process, until it
//! is released.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// Whether the relay holds what passes, and its waiters.
type Gate = Arc<(Mutex<bool>, Condvar)>;

/// A relay to one server, open for as long as the test runs (its threads end with the
/// connections they carry, and with the test's process).
pub struct Relay {
    gate: Gate,
    url: String,
}

impl Relay {
    /// A relay to the server of `url` (`scheme://[credentials@]host:port/...`).
    pub fn new(url: &str) -> Self {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (server, path) = rest.split_at(end);
        let server = if server.contains(':') {
            server.to_owned()
        } else {
            format!("{server}:5432")
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = if credentials.is_empty() {
            String::new()
        } else {
            format!("{credentials}@")
        };
        let relayed = format!("{scheme}://{at}{}{path}", listener.local_addr().unwrap());
        let gate = Gate::default();
        let open = gate.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = TcpStream::connect(&server) else {
                    continue; // the client sees its connection closed
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let gate = open.clone();
                    thread::spawn(move || pass(from, to, &gate));
                }
            }
        });
        Self { gate, url: relayed }
    }

    /// `url` with the relay in place of the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on what either side sends waits, until [`release`](Self::release).
    pub fn hold(&self) {
        *self.gate.0.lock().unwrap() = true;
    }

    /// Passes on what waited, and what comes next.
    pub fn release(&self) {
        *self.gate.0.lock().unwrap() = false;
        self.gate.1.notify_all();
    }
}

impl Drop for Relay {
    /// Released, so that a test that fails while it holds leaves no connection waiting.
    fn drop(&mut self) {
        self.release();
    }
}

/// Passes what `from` sends on to `to`, each read once the gate is open, until either ends.
fn pass(mut from: TcpStream, mut to: TcpStream, gate: &Gate) {
    let mut buffer = [0; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (held, opened) = &**gate;
        drop(
            opened
                .wait_while(held.lock().unwrap(), |held| *held)
                .unwrap(),
        );
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
