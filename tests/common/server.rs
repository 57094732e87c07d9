//! A real PostgreSQL server for the tests: the one `VOUCH_TEST_PG` names (a URL whose
//! role may create databases and roles), or else a throwaway cluster this test binary
//! starts itself (initdb into a temporary folder, as the `postgres` user when run as root,
//! listening on 127.0.0.1 on a free port, stopped and removed when the binary exits).
//! Each test gets a database of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The administrator's URL of the server, or why there is none.
fn admin_url() -> Result<&'static str, &'static str> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("VOUCH_TEST_PG") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_cluster(),
        })
        .as_deref()
        .map_err(String::as_str)
}

/// A new, empty database on the server, as (admin URL of it, its name); `None` (with a
/// message naming `test`) when there is no server and none can be started.
pub fn database(test: &str) -> Option<(String, String)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let admin = match admin_url() {
        Ok(url) => url,
        Err(why) => {
            eprintln!(
                "SKIPPED {test} on PostgreSQL: VOUCH_TEST_PG is unset and no server could be started ({why})"
            );
            return None;
        }
    };
    let name = format!(
        "vouch_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(admin, postgres::NoTls).expect("the test server");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("a test database");
    Some((with_dbname(admin, &name), name))
}

/// `url` with its database replaced by `name`.
pub fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// An administrator's session on `url`, to do what only someone outside Vouch could.
pub fn admin_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("the test server")
}

fn postgres_bin(tool: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin").join(tool)))
            .filter(|path| path.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn run_as_server_user(program: &Path, as_root: bool) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A throwaway cluster of this test binary's own: stopped and removed when the binary
/// exits, and stoppable in between (the fault test's server going away).
pub struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    options: String,
    as_root: bool,
    pub url: String,
}

impl Cluster {
    pub fn start() -> Result<Cluster, String> {
        Self::start_with(None)
    }

    /// A cluster of the test's own, to stop and start again; `None` (the test says it
    /// skipped, and why) when none can be started here.
    #[allow(dead_code)]
    pub fn for_test(test: &str) -> Option<Cluster> {
        Self::start()
            .map_err(|why| {
                eprintln!("SKIPPED {test}: no server of its own could be started ({why})");
            })
            .ok()
    }

    /// A cluster that speaks TLS with this certificate (PEM) and key.
    pub fn start_with_tls(certificate: &str, key: &str) -> Result<Cluster, String> {
        Self::start_with(Some((certificate, key)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Result<Cluster, String> {
        let initdb = postgres_bin("initdb").ok_or("initdb is not installed")?;
        let pg_ctl = postgres_bin("pg_ctl").ok_or("pg_ctl is not installed")?;
        // initdb refuses to run as root: a root test run hands the cluster to `postgres`.
        let as_root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == 0)
        };
        let dir = tempfile::Builder::new()
            .prefix("vouch-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot hand the cluster's folder to the postgres user".into());
            }
        }
        let data = dir.join("data");
        let output = run_as_server_user(&initdb, as_root)
            .args([
                "-A",
                "trust",
                "-U",
                "vouch_admin",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            dir.display()
        );
        if let Some((certificate, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, text) in [("server.crt", certificate), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, text).map_err(|e| e.to_string())?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| e.to_string())?;
                if as_root {
                    Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&path)
                        .status()
                        .map_err(|e| e.to_string())?;
                }
            }
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let cluster = Cluster {
            options,
            url: format!("postgres://vouch_admin@127.0.0.1:{port}/postgres"),
            pg_ctl,
            data,
            as_root,
        };
        cluster.start_again()?;
        // Stops the server and removes its folder once this test binary has exited.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = if as_root {
                format!("runuser -u postgres -- '{}'", cluster.pg_ctl.display())
            } else {
                format!("'{}'", cluster.pg_ctl.display())
            },
            data = cluster.data.display(),
            dir = dir.display(),
        );
        Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        Ok(cluster)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let output = run_as_server_user(&self.pg_ctl, self.as_root)
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-l"])
            .arg(self.data.with_file_name("server.log"))
            .args(args)
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl(&["-o", &self.options, "start"])
    }

    /// The server goes away at once, as a crash or a pulled cable would take it.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "immediate", "stop"])
    }

    /// The server shut down by its administrator (a maintenance restart): each session is
    /// told so before it goes.
    #[allow(dead_code)]
    pub fn shut_down(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "fast", "stop"])
    }

    /// A new, empty database on this cluster: its URL.
    pub fn database(&self, name: &str) -> String {
        admin_client(&self.url)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("a test database");
        with_dbname(&self.url, name)
    }
}

fn start_cluster() -> Result<String, String> {
    let cluster = Cluster::start()?;
    Ok(cluster.url.clone())
}
