//! [`EtcdCluster`]: a real etcd cluster (Debian's `etcd-server`) on loopback ports, one process
//! per member, each in its own temporary directory; killed and removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary: `$FERROKUBE_ETCD_BIN`, else `etcd` on PATH, else `/usr/bin/etcd`.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROKUBE_ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/etcd");
        p.is_file().then_some(p)
    })
}

fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free loopback port: {e}"),
    }
}

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of N members on loopback.
pub struct EtcdCluster {
    bin: PathBuf,
    members: Vec<Member>,
    root: PathBuf,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers; None (after a loud message)
    /// when no etcd binary is installed (`hack/install-tools.sh --etcd`).
    pub fn start(n: usize) -> Option<EtcdCluster> {
        let Some(bin) = etcd_binary() else {
            eprintln!(
                "\n\n!!!!! SKIPPED: no etcd binary (hack/install-tools.sh --etcd installs Debian's \
                 etcd-server). This etcd test did NOT run. !!!!!\n"
            );
            return None;
        };
        let root = std::env::temp_dir().join(format!(
            "ferrokube-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                dir: root.join(format!("m{i}")),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { bin, members, root };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy(Duration::from_secs(60));
        Some(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        if let Err(e) = std::fs::create_dir_all(&m.dir) {
            panic!("creating {}: {e}", m.dir.display());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("etcd.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let child = Command::new(&self.bin)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.dir.join("data").display()))
            .arg(format!("--listen-client-urls={}", m.client_url))
            .arg(format!("--advertise-client-urls={}", m.client_url))
            .arg(format!("--listen-peer-urls={}", m.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=ferrokube-test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(c) => m.child = Some(c),
            Err(e) => panic!("spawning {}: {e}", self.bin.display()),
        }
    }

    /// Every member's client URL, comma-separated (for `--etcd-servers`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the killed member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// The data directory root (logs of every member are in `m*/etcd.log`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Waits until a member answers a linearizable read through `etcdctl`-free HTTP: the v3
    /// gateway's `/health` endpoint of every running member says `true`.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .all(|m| health(&m.client_url));
            if healthy {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd cluster not healthy after {timeout:?} (logs in {})",
                    self.root.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `GET <url>/health` over plain HTTP/1.0 (no client library needed).
fn health(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"") || out.contains("\"health\": \"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("etcd data and logs kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
