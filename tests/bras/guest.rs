//! The throw-away QEMU guest for a host whose kernel has no PPP: Debian's
//! own kernel (linux-image-amd64, installed on the host so that its image
//! and modules are in /boot and /lib/modules), booted in software emulation
//! with the host's root file system mounted read-only over virtio-9p, no
//! network device, and a small initramfs built here (a static busybox, the
//! virtio and 9p modules, `guest-init.sh` as /init). The guest runs this
//! test binary with `LIBERAD_BRAS_SCENARIO=here` and writes its status and
//! output to a second, writable 9p share: a directory of the host test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Outcome;
use crate::common;

/// The longest a guest run may take, boot to power-off.
const GUEST_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// Modules the initramfs loads to mount the host's root.
const BOOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];
/// Modules the scenario loads in the guest (through the host's modprobe).
const SCENARIO_MODULES: [&str; 5] = ["ppp_generic", "ppp_async", "pppoe", "ppp_mppe", "veth"];

/// A kernel image with its modules.
pub struct Kernel {
    pub image: PathBuf,
    pub version: String,
    modules: PathBuf,
    /// Module name → (its file, relative to `modules`; its dependencies).
    dep: BTreeMap<String, (String, Vec<String>)>,
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl Kernel {
    /// The newest /boot/vmlinuz-VERSION whose /lib/modules/VERSION has the
    /// modules the guest needs; or why there is none.
    pub fn find() -> Result<Kernel, String> {
        let mut versions: Vec<String> = std::fs::read_dir("/boot")
            .map_err(|e| format!("cannot read /boot: {e}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("vmlinuz-"))
                    .map(str::to_owned)
            })
            .collect();
        versions.sort();
        let mut why = String::from(
            "no kernel image in /boot (install Debian's linux-image-amd64 on the host)",
        );
        for version in versions.into_iter().rev() {
            match Kernel::load(&version) {
                Ok(kernel) => return Ok(kernel),
                Err(e) => why = e,
            }
        }
        Err(why)
    }

    fn load(version: &str) -> Result<Kernel, String> {
        let image = PathBuf::from(format!("/boot/vmlinuz-{version}"));
        std::fs::File::open(&image).map_err(|e| format!("cannot read {}: {e}", image.display()))?;
        let modules = PathBuf::from(format!("/lib/modules/{version}"));
        let text = std::fs::read_to_string(modules.join("modules.dep"))
            .map_err(|e| format!("no modules for kernel {version}: {e}"))?;
        let builtin = std::fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
        let mut dep = BTreeMap::new();
        for line in text.lines() {
            if let Some((module, deps)) = line.split_once(':') {
                let deps = deps.split_whitespace().map(module_name).collect();
                dep.insert(module_name(module), (module.to_owned(), deps));
            }
        }
        let builtin: Vec<String> = builtin.lines().map(module_name).collect();
        for needed in BOOT_MODULES.iter().chain(&SCENARIO_MODULES) {
            if !dep.contains_key(*needed) && !builtin.iter().any(|b| b == needed) {
                return Err(format!("kernel {version} has no module {needed}"));
            }
        }
        Ok(Kernel {
            image,
            version: version.to_owned(),
            modules,
            dep,
        })
    }

    /// The files of `names` and their dependencies, dependencies first
    /// (built-in modules need no file).
    fn load_order(&self, names: &[&str]) -> Vec<String> {
        fn visit(kernel: &Kernel, name: &str, order: &mut Vec<String>) {
            let Some((file, deps)) = kernel.dep.get(name) else {
                return;
            };
            if order.contains(file) {
                return;
            }
            for d in deps {
                visit(kernel, d, order);
            }
            order.push(file.clone());
        }
        let mut order = Vec::new();
        for name in names {
            visit(self, name, &mut order);
        }
        order
    }

    /// A module's contents, uncompressed (busybox's insmod takes plain
    /// modules).
    fn module_bytes(&self, file: &str) -> Vec<u8> {
        let path = self.modules.join(file);
        let tool = [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")]
            .into_iter()
            .find(|(suffix, _)| file.ends_with(suffix));
        match tool {
            None => std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            Some((_, tool)) => {
                let out = Command::new(tool)
                    .arg("-dc")
                    .arg(&path)
                    .output()
                    .unwrap_or_else(|e| panic!("{tool} -dc {}: {e}", path.display()));
                assert!(out.status.success(), "{tool} -dc {}", path.display());
                out.stdout
            }
        }
    }
}

/// Whether `path` is a static executable (no ELF interpreter), as the
/// initramfs's busybox must be.
pub fn is_static_elf(path: &str) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(count)).all(|i| {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX) + i * usize::from(size);
        // PT_INTERP is 3.
        bytes.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// A "newc" cpio archive, the initramfs format.
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio {
            bytes: Vec::new(),
            inode: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let size = u32::try_from(data.len()).expect("an initramfs file under 4 GiB");
        let name_size = u32::try_from(name.len() + 1).unwrap();
        let fields = [
            self.inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
        ];
        self.inode += 1;
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, data, (0, 0));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.bytes
    }
}

/// A value for the guest's /bras.env, which the init script sources.
fn shell_quote(value: &str) -> String {
    assert!(!value.contains('\''), "a quote in {value:?}");
    format!("'{value}'")
}

fn initramfs(kernel: &Kernel, busybox: &str, test_name: &str) -> Vec<u8> {
    let mut cpio = Cpio::new();
    for dir in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        cpio.dir(dir);
    }
    cpio.entry("dev/console", 0o020600, &[], (5, 1));
    cpio.file(
        "bin/busybox",
        0o755,
        &std::fs::read(busybox).expect("read busybox"),
    );
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bras/guest-init.sh");
    cpio.file(
        "init",
        0o755,
        &std::fs::read(&init).expect("read guest-init.sh"),
    );
    let mut order = String::new();
    for file in kernel.load_order(&BOOT_MODULES) {
        let name = format!("{}.ko", module_name(&file));
        cpio.file(
            &format!("modules/{name}"),
            0o644,
            &kernel.module_bytes(&file),
        );
        order.push_str(&name);
        order.push('\n');
    }
    cpio.file("modules.order", 0o644, order.as_bytes());
    let exe = std::env::current_exe().expect("the test binary's path");
    let env = format!(
        "BRAS_TEST_BIN={}\nBRAS_TEST_NAME={}\nBRAS_INIT={}\nBRAS_CI={}\nBRAS_LOGS={}\n",
        shell_quote(exe.to_str().expect("a UTF-8 path")),
        shell_quote(test_name),
        shell_quote(init.to_str().expect("a UTF-8 path")),
        shell_quote(&std::env::var("CI").unwrap_or_default()),
        shell_quote(&std::env::var("LIBERAD_BRAS_LOGS").unwrap_or_default()),
    );
    cpio.file("bras.env", 0o644, env.as_bytes());
    cpio.finish()
}

/// Boots the guest, which runs test `test_name` of this binary as the
/// scenario, and waits for it to power off.
pub fn run(kernel: &Kernel, qemu: &str, busybox: &str, test_name: &str) -> Outcome {
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = temp.path();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs(kernel, busybox, test_name)).unwrap();
    let console = dir.join("console.log");
    let qemu_log = dir.join("qemu.log");
    let log = std::fs::File::create(&qemu_log).unwrap();
    let fsdev = |id: &str, path: &Path, extra: &str| {
        format!(
            "local,id={id},path={},security_model=none,multidevs=remap{extra}",
            path.display()
        )
    };
    let began = Instant::now();
    let mut child = common::dies_with_test(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1536"])
        .args(["-nodefaults", "-no-user-config", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1 random.trust_cpu=on",
        ])
        .args(["-fsdev", &fsdev("hostroot", Path::new("/"), ",readonly=on")])
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
        .args(["-fsdev", &fsdev("out", &out, "")])
        .args(["-device", "virtio-9p-pci,fsdev=out,mount_tag=out"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start qemu-system-x86_64");
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if began.elapsed() > GUEST_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = began.elapsed();
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let status = read(&out.join("status")).trim().parse().ok();
    let mut diagnostics = format!(
        "kernel {} ({}); qemu {}\n---- guest console ----\n{}---- qemu ----\n{}",
        kernel.version,
        kernel.image.display(),
        match exited {
            Some(s) => format!("exited ({s})"),
            None => format!("killed after {GUEST_DEADLINE:?}"),
        },
        read(&console),
        read(&qemu_log),
    );
    diagnostics.push_str(&read(&out.join("init-error")));
    Outcome {
        status,
        output: read(&out.join("output.txt")),
        diagnostics,
        took,
    }
}
