//! ferrokube benchmark driver. Placeholder: the real benchmark (startup, RSS, throughput, latency
//! percentiles against etcd) replaces this file.

fn main() {
    eprintln!("not yet");
    std::process::exit(1);
}
