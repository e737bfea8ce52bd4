//! A small HTTP CONNECT proxy, the kind corporate networks put between a cluster and the
//! internet: tests point `HTTPS_PROXY` at it and then ask which hosts were tunnelled to.
//!
//! It only tunnels (CONNECT); anything else gets 405, as a proxy that refuses to forward
//! plain HTTP would answer. It never sees inside the tunnel: TLS stays end to end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest request head read; a CONNECT is a few dozen bytes.
const MAX_HEAD: usize = 8 * 1024;

pub struct ConnectProxy {
    addr: SocketAddr,
    /// `host:port` of every CONNECT, in order; also those the proxy could not reach.
    targets: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl ConnectProxy {
    /// Listens on a free loopback port; stops when dropped.
    pub async fn start() -> anyhow::Result<ConnectProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, seen.clone()));
            }
        });
        Ok(ConnectProxy { addr, targets, task })
    }

    /// `http://127.0.0.1:PORT`, the value for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `host:port` of every tunnel asked for so far.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many tunnels were asked for `target` (`host:port`).
    pub fn tunnels_to(&self, target: &str) -> usize {
        self.targets().iter().filter(|t| t.as_str() == target).count()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let Ok(Ok((head, rest))) = tokio::time::timeout(Duration::from_secs(10), read_head(&mut client)).await else {
        return;
    };
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let target = target.to_string();
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(target.clone());
    let mut upstream = match TcpStream::connect(&target).await {
        Ok(s) => s,
        Err(_) => {
            let _ =
                client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").await;
            return;
        }
    };
    if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_err() {
        return;
    }
    // Bytes the client sent right behind the head (it may not wait for our 200).
    if !rest.is_empty() && upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads up to the blank line ending the request head; returns the head and what followed it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}
