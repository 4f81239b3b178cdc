//! A throw-away PostgreSQL cluster for the tests: `initdb` and `pg_ctl`
//! from the system's PostgreSQL, listening only on a Unix socket in a
//! temporary directory, one cluster per test binary, one database per test.
//! A small watcher process stops the cluster and removes the directory when
//! the test binary exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Cluster {
    bin: PathBuf,
    socket_dir: PathBuf,
    data: PathBuf,
    /// Run the server's commands as this user (initdb refuses root).
    run_as: Option<&'static str>,
    /// Stops the cluster when the test process is gone; never waited for.
    _watcher: Option<std::process::Child>,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The directory holding `initdb`, `pg_ctl` and `psql`: Debian's
/// `/usr/lib/postgresql/VERSION/bin` (newest first), else the PATH.
fn server_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "psql"]
            .iter()
            .all(|p| dir.join(p).exists())
    };
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| complete(bin))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().or_else(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .find(|dir| complete(dir))
    })
}

impl Cluster {
    /// A command of the server's, as the right user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn start() -> Cluster {
        let bin = server_binaries().expect("PostgreSQL server binaries");
        let root = rustix::process::geteuid().is_root();
        let dir = tempfile::Builder::new()
            .prefix("liberad-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let mut cluster = Cluster {
            bin,
            socket_dir: dir.clone(),
            data: dir.join("data"),
            run_as: root.then_some("postgres"),
            _watcher: None,
        };
        if root {
            let status = Command::new("chown")
                .args(["postgres:", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c max_connections=300",
            dir.display()
        );
        let out = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-o", &options, "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        cluster._watcher = Some(cluster.watch_for_exit(&dir));
        cluster
    }

    /// Starts a watcher that stops the cluster and removes its directory
    /// once this test process is gone.
    fn watch_for_exit(&self, dir: &Path) -> std::process::Child {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match self.run_as {
            Some(user) => format!("runuser -u {user} -- {}", pg_ctl.display()),
            None => pg_ctl.display().to_string(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            data = self.data.display(),
            dir = dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watcher")
    }

    /// A new empty database and its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let out = self
            .command("psql")
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "CREATE DATABASE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}",
            self.socket_dir.display()
        )
    }

    /// Stops the server (fast shutdown), as an outage would.
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again.
    pub fn restart(&self) {
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c max_connections=300",
            self.socket_dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.socket_dir.join("server.log"))
            .args(["-w", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The cluster of this test binary, started on first use; `None` when the
/// server binaries are not installed (under CI that is a failure).
pub fn cluster() -> Option<&'static Cluster> {
    CLUSTER
        .get_or_init(|| {
            if server_binaries().is_none() {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "PostgreSQL is missing: install Debian's postgresql"
                );
                return None;
            }
            Some(Cluster::start())
        })
        .as_ref()
}
