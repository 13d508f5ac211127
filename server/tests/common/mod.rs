//! Test harness: start the server under test on a loopback port with a
//! temporary share, and drive it with real clients (`smbclient`).
//!
//! The server under test is `duet` (the binary from `DUET_BIN`, else the one
//! cargo built for this test), or Samba's `smbd` when `DUET_TEST_SERVER=smbd`
//! (started through `../shared/tools/ref-smbd`, overridable with `REF_SMBD`),
//! so that the tests themselves can be checked against a reference server.
//!
//! Layout of a server's temporary directory:
//!
//! ```text
//! ROOT/           (0755, so that smbd's forced user can reach the share)
//!   share/        the share `share`, served read-write
//!   client/       the local working directory of every smbclient run
//!   state/        smbd's private state (only with DUET_TEST_SERVER=smbd)
//!   (anything)    tests plant sentinels here, beside the share, to check
//!                 that nothing outside the share can be reached
//! ```
//!
//! duet runs with ROOT as its working directory, so whatever it writes to
//! relative paths (e.g. `./duet-data`) stays in the temp dir.
#![allow(dead_code)]

pub mod pair;
pub mod script;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const USER: &str = "duet";
pub const PASSWORD: &str = "duetpass";
pub const SHARE: &str = "share";

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for one smbclient run.
pub const SMBCLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which server implementation is under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Duet,
    Smbd,
}

impl Kind {
    pub fn from_env() -> Kind {
        match std::env::var("DUET_TEST_SERVER").as_deref() {
            Ok("smbd") | Ok("samba") => Kind::Smbd,
            Ok("") | Ok("duet") | Err(_) => Kind::Duet,
            Ok(other) => panic!("DUET_TEST_SERVER={other}: expected duet or smbd"),
        }
    }
}

/// Transport protection required by the server (and asked for by the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// Server requires signing; the client is told `client signing=required`.
    Signing,
    /// Server requires encryption; the client is told `client smb encrypt=required`.
    Encrypt,
}

impl Mode {
    /// smbclient arguments that make the client insist on the same protection.
    pub fn client_args(self) -> Vec<String> {
        match self {
            Mode::Plain => vec![],
            Mode::Signing => vec!["--option=client signing=required".into()],
            Mode::Encrypt => vec!["--option=client smb encrypt=required".into()],
        }
    }
}

/// Absolute path of the workspace root (the directory holding `server/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `duet` binary under test.
pub fn duet_bin() -> PathBuf {
    match std::env::var_os("DUET_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_duet")),
    }
}

/// The ref-smbd helper from the shared tools directory.
pub fn ref_smbd() -> PathBuf {
    match std::env::var_os("REF_SMBD") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("../shared/tools/ref-smbd"),
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Append-only text shared with a reader thread (the server's log).
type SharedLog = Arc<Mutex<String>>;

/// A running server under test, stopped on drop.
pub struct Server {
    pub kind: Kind,
    pub mode: Mode,
    pub port: u16,
    root: tempfile::TempDir,
    child: Option<Child>,
    stderr_log: SharedLog,
    /// smbd's state dir (ref-smbd --dir), when kind == Smbd.
    smbd_state: Option<PathBuf>,
    /// What it was started with, to start it again ([`Server::restart`]).
    opts: Options,
}

/// Options for [`Server::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Extra duet arguments (ignored for smbd).
    pub duet_args: Vec<String>,
    /// Extra smb.conf lines `key = value` (ignored for duet).
    pub smbd_options: Vec<String>,
    /// Extra environment variables for duet (ignored for smbd).
    pub duet_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options { mode: Mode::Plain, duet_args: vec![], smbd_options: vec![], duet_env: vec![] }
    }
}

impl Server {
    /// Start the server under test with share `share`, user duet/duetpass.
    pub fn start(mode: Mode) -> Server {
        Server::start_with(Options { mode, ..Options::default() })
    }

    pub fn start_with(opts: Options) -> Server {
        let kind = Kind::from_env();
        // A port taken between free_port() and the server's bind, or a
        // concurrent `useradd` in ref-smbd, can make a start fail: retry.
        let mut last = String::new();
        for _ in 0..3 {
            match Server::try_start(kind, &opts) {
                Ok(s) => return s,
                Err(e) => {
                    eprintln!("harness: server start failed, retrying: {e}");
                    last = e;
                }
            }
        }
        panic!("{kind:?} did not start: {last}");
    }

    fn try_start(kind: Kind, opts: &Options) -> Result<Server, String> {
        let root = tempfile::Builder::new().prefix("duet-test-").tempdir().map_err(|e| format!("tempdir: {e}"))?;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let share = root.path().join("share");
        std::fs::create_dir(&share).unwrap();
        std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(root.path().join("client")).unwrap();
        let port = free_port();
        let mut server = Server {
            kind,
            mode: opts.mode,
            port,
            root,
            child: None,
            stderr_log: Arc::new(Mutex::new(String::new())),
            smbd_state: None,
            opts: opts.clone(),
        };
        match kind {
            Kind::Duet => server.spawn_duet(opts)?,
            Kind::Smbd => server.spawn_smbd(opts)?,
        }
        Ok(server)
    }

    fn spawn_duet(&mut self, opts: &Options) -> Result<(), String> {
        let bin = duet_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--share")
            .arg(format!("{SHARE}={}", self.share_dir().display()))
            .arg("--user")
            .arg(format!("{USER}:{PASSWORD}"))
            .arg("--log-level")
            .arg(std::env::var("DUET_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()));
        match self.mode {
            Mode::Plain => {}
            Mode::Signing => {
                cmd.args(["--signing", "required"]);
            }
            Mode::Encrypt => {
                cmd.arg("--encrypt");
            }
        }
        cmd.args(&opts.duet_args);
        cmd.envs(opts.duet_env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(self.root.path()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // A restart appends to the same log: look for this start's lines only.
        let from = self.stderr_log.lock().unwrap().len();
        let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        pump(child.stderr.take().unwrap(), self.stderr_log.clone(), "");
        pump(child.stdout.take().unwrap(), self.stderr_log.clone(), "[stdout] ");
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.stderr_log.lock().unwrap()[from..].contains("duet: listening") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // let the pumps drain
                let log = self.stderr_log.lock().unwrap()[from..].to_string();
                self.child = None;
                let msg = format!("duet exited with {status} before listening; log:\n{log}");
                if log.contains("in use") {
                    return Err(msg);
                }
                panic!("{msg}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.stderr_log.lock().unwrap().clone();
                panic!("duet did not listen on 127.0.0.1:{} within {START_TIMEOUT:?}; log:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_smbd(&mut self, opts: &Options) -> Result<(), String> {
        let state = self.root.path().join("state");
        let mut cmd = Command::new("bash");
        // smbd signals its whole process group when it stops: give it its own.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.arg(ref_smbd())
            .arg("start")
            .arg("--dir")
            .arg(&state)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--share")
            .arg(format!("{SHARE}={}", self.share_dir().display()))
            .arg("--user")
            .arg(format!("{USER}:{PASSWORD}"))
            // Failed logons are logged at auth_audit level 2.
            .args(["--option", "log level = 1 auth_audit:3"]);
        match self.mode {
            Mode::Plain => {}
            Mode::Signing => {
                cmd.args(["--option", "server signing = required"]);
            }
            Mode::Encrypt => {
                cmd.args(["--option", "server smb encrypt = required"]);
            }
        }
        for o in &opts.smbd_options {
            cmd.args(["--option", o]);
        }
        self.smbd_state = Some(state);
        let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("run {}: {e}", ref_smbd().display()))?;
        if !out.status.success() {
            return Err(format!(
                "ref-smbd start failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Parent of the share: a place outside the share for sentinels.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The shared directory on the server's disk.
    pub fn share_dir(&self) -> PathBuf {
        self.root.path().join("share")
    }

    /// The local working directory of smbclient runs.
    pub fn client_dir(&self) -> PathBuf {
        self.root.path().join("client")
    }

    pub fn unc(&self) -> String {
        format!("//127.0.0.1/{SHARE}")
    }

    /// Everything the server logged so far (duet: stderr and stdout; smbd:
    /// its log file).
    pub fn log(&self) -> String {
        match &self.smbd_state {
            Some(state) => {
                let mut s = String::new();
                for f in ["log/smbd.log", "log/stdout.log"] {
                    if let Ok(t) = std::fs::read(state.join(f)) {
                        s.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                s
            }
            None => self.stderr_log.lock().unwrap().clone(),
        }
    }

    /// Wait up to `timeout` until `pred` holds on the log text after byte
    /// offset `from`; returns that tail of the log either way.
    pub fn wait_log(&self, from: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            let tail = log.get(from..).unwrap_or("").to_string();
            if pred(&tail) || Instant::now() > deadline {
                return tail;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An smbclient run against this server's share, as duet/duetpass, with
    /// the client options for this server's mode.
    /// Runs smbtorture tests (full names, `smb2.SUITE.TEST`) against the
    /// server and returns the ones that did not report success, with
    /// smbtorture's output.
    pub fn torture(&self, tests: &[&str]) -> (Vec<String>, String) {
        let out = Command::new("smbtorture")
            .arg(format!("//127.0.0.1/{SHARE}"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(format!("{USER}%{PASSWORD}"))
            .arg("--format=subunit")
            // A test that hangs is a failure, not a stuck run.
            .arg("--maximum-runtime=240")
            .args(tests)
            .stdin(Stdio::null())
            .output()
            .expect("run smbtorture");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let passed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("success: ")).map(str::trim).collect();
        let missing = tests
            .iter()
            .map(|t| t.rsplit('.').next().unwrap_or(t))
            .filter(|t| !passed.contains(t))
            .map(String::from)
            .collect();
        (missing, text)
    }

    /// [`torture`](Self::torture), asserting that every test passed.
    pub fn assert_torture_passes(&self, tests: &[&str]) {
        let (missing, text) = self.torture(tests);
        assert!(missing.is_empty(), "did not pass: {missing:?}\n{text}\n--- server log ---\n{}", self.log());
    }

    pub fn smbclient(&self) -> Smbclient {
        let mut c = Smbclient::new(self.port);
        c.target(&self.unc()).user(USER, PASSWORD).cwd(&self.client_dir());
        c.args(self.mode.client_args());
        c
    }

    /// Run `smbclient -c CMDS` against the share; shorthand for the common case.
    pub fn run(&self, cmds: &str) -> SmbOutput {
        self.smbclient().cmd(cmds).run()
    }

    /// PID of the server process (duet; for smbd the parent smbd).
    pub fn pid(&self) -> Option<u32> {
        if let Some(c) = &self.child {
            return Some(c.id());
        }
        let state = self.smbd_state.as_ref()?;
        std::fs::read_to_string(state.join("smbd.pid")).ok()?.trim().parse().ok()
    }

    /// Kills duet with SIGKILL (a non-elective reboot: no drain, no
    /// checkpoint) and waits until the process is gone. Duet only.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: no duet process running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM (an elective reboot: drain, checkpoint, exit) and waits
    /// up to `limit` for duet to exit; returns its exit status, or None
    /// when it had to be killed with SIGKILL after `limit`. Duet only.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_ref().expect("terminate: no duet process running");
        // SAFETY: kill(2) on our own child's pid, which wait() has not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.wait_exit(limit)
    }

    /// Waits up to `limit` for duet to exit (asked to by a signal or by
    /// `duet stop`) and reaps it; its exit status, or None when it had to
    /// be killed with SIGKILL after `limit`. Duet only.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("wait_exit: no duet process running");
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// Starts duet again after [`kill9`](Self::kill9) or
    /// [`terminate`](Self::terminate): the same binary, arguments, port and
    /// working directory (so the same share, state directory and journal
    /// when they are given as paths relative to [`root`](Self::root)).
    /// Returns the log offset where the new process's lines begin.
    pub fn restart(&mut self) -> usize {
        assert_eq!(self.kind, Kind::Duet, "restart: duet only");
        assert!(self.child.is_none(), "restart: duet is still running");
        let from = self.log().len();
        let opts = self.opts.clone();
        let mut last = String::new();
        // The port is ours; a bind can still fail for a moment after a kill.
        for _ in 0..20 {
            match self.spawn_duet(&opts) {
                Ok(()) => return from,
                Err(e) => {
                    eprintln!("harness: restart failed, retrying: {e}");
                    last = e;
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        panic!("duet did not restart on port {}: {last}", self.port);
    }

    /// The environment [`restart`](Self::restart) starts duet with from
    /// now on, in place of the one it was started with (a test that armed a
    /// failpoint restarts without it).
    pub fn set_duet_env(&mut self, env: &[(&str, &str)]) {
        self.opts.duet_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM, then SIGKILL after 5 s.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(state) = self.smbd_state.take() {
            let mut cmd = Command::new("bash");
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let _ = cmd
                .arg(ref_smbd())
                .arg("stop")
                .arg("--dir")
                .arg(&state)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.smbd_state = Some(state); // keep the log readable
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.stop();
        if panicking {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let start = lines.len().saturating_sub(200);
            eprintln!(
                "---- {:?} server log (last {} lines) ----\n{}\n---- end of server log ----",
                self.kind,
                lines.len() - start,
                lines[start..].join("\n")
            );
            if std::env::var_os("DUET_TEST_KEEP").is_some() {
                let kept = self.root.path().to_path_buf();
                // Leak the temp dir on purpose, for a post-mortem.
                let dir = std::mem::replace(&mut self.root, tempfile::tempdir().unwrap());
                let _ = dir.keep();
                eprintln!("kept {}", kept.display());
            }
        }
    }
}

/// Copy lines from `r` into `log` on a background thread (and keep draining
/// it, so the server never blocks on a full pipe).
fn pump(r: impl Read + Send + 'static, log: SharedLog, prefix: &'static str) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let mut l = log.lock().unwrap();
                    l.push_str(prefix);
                    l.push_str(&String::from_utf8_lossy(&line));
                    if !l.ends_with('\n') {
                        l.push('\n');
                    }
                }
            }
        }
    });
}

/// The outcome of one smbclient run.
#[derive(Debug)]
pub struct SmbOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub argv: Vec<String>,
}

impl SmbOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    /// stdout and stderr together (smbclient prints errors to either).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panic with the whole transcript unless the run succeeded and reported
    /// no NT_STATUS error.
    pub fn assert_ok(&self) -> &Self {
        let text = self.all();
        assert!(self.success() && !text.contains("NT_STATUS_"), "smbclient failed: {self}");
        self
    }
}

impl std::fmt::Display for SmbOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  argv: {:?}\n  status: {:?}{}\n  stdout:\n{}\n  stderr:\n{}",
            self.argv,
            self.status,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Builder for one smbclient invocation.
pub struct Smbclient {
    port: u16,
    target: Option<String>,
    user: Option<(String, String)>,
    cwd: Option<PathBuf>,
    args: Vec<String>,
    timeout: Duration,
    protocol: Option<String>,
}

impl Smbclient {
    pub fn new(port: u16) -> Smbclient {
        Smbclient {
            port,
            target: None,
            user: None,
            cwd: None,
            args: vec![],
            timeout: SMBCLIENT_TIMEOUT,
            protocol: Some("SMB3".into()),
        }
    }

    pub fn target(&mut self, unc: &str) -> &mut Self {
        self.target = Some(unc.into());
        self
    }

    pub fn user(&mut self, name: &str, password: &str) -> &mut Self {
        self.user = Some((name.into(), password.into()));
        self
    }

    pub fn cwd(&mut self, dir: &Path) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn arg(&mut self, a: impl Into<String>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, a: I) -> &mut Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// `-c CMDS`: semicolon-separated smbclient commands.
    pub fn cmd(&mut self, cmds: &str) -> &mut Self {
        self.args.push("-c".into());
        self.args.push(cmds.into());
        self
    }

    /// `-m PROTO` (default SMB3); None leaves smbclient's default.
    pub fn protocol(&mut self, p: Option<&str>) -> &mut Self {
        self.protocol = p.map(Into::into);
        self
    }

    pub fn timeout(&mut self, t: Duration) -> &mut Self {
        self.timeout = t;
        self
    }

    pub fn argv(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![];
        if let Some(t) = &self.target {
            v.push(t.clone());
        }
        v.push("-p".into());
        v.push(self.port.to_string());
        if let Some((u, p)) = &self.user {
            v.push("-U".into());
            v.push(format!("{u}%{p}"));
        }
        if let Some(p) = &self.protocol {
            v.push("-m".into());
            v.push(p.clone());
        }
        v.extend(self.args.iter().cloned());
        v
    }

    pub fn run(&self) -> SmbOutput {
        run_with_timeout("smbclient", &self.argv(), self.cwd.as_deref(), self.timeout)
    }
}

/// Run a program with a time limit, collecting its output.
pub fn run_with_timeout(prog: &str, argv: &[String], cwd: Option<&Path>, timeout: Duration) -> SmbOutput {
    let mut cmd = Command::new(prog);
    cmd.args(argv).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut full_argv = vec![prog.to_string()];
    full_argv.extend(argv.iter().cloned());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    let out_h = collect(child.stdout.take().unwrap());
    let err_h = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(s) => break Some(s),
            None if Instant::now() > deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    SmbOutput { status, stdout: out_h.join().unwrap(), stderr: err_h.join().unwrap(), timed_out, argv: full_argv }
}

fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Write `len` bytes of deterministic pseudo-random data (splitmix64 seeded
/// with `seed`) to `path`.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut state = seed;
    let mut left = len;
    let mut chunk = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        for word in chunk[..n].chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            word.copy_from_slice(&z.to_le_bytes()[..word.len()]);
        }
        w.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

/// SHA-256 of a file, hex (via coreutils `sha256sum`).
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Names listed by smbclient `ls` output (first column), without `.`/`..`.
///
/// smbclient prints `  NAME   ATTRS   SIZE  DATE` with the name padded to at
/// least 35 columns; names may contain spaces, so parse from the right: the
/// date is the last five fields, the size before it, then the attributes.
pub fn ls_names(stdout: &str) -> Vec<String> {
    let mut names = vec![];
    for line in stdout.lines() {
        if !line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        // NAME [ATTRS] SIZE Dow Mon DD HH:MM:SS YYYY
        if fields.len() < 7 {
            continue;
        }
        let n = fields.len();
        if fields[n - 6].parse::<u64>().is_err() || fields[n - 1].parse::<u32>().is_err() {
            continue;
        }
        // The name is everything before the attribute column (if any).
        let size_idx = n - 6;
        let attrs_present = size_idx >= 2 && fields[size_idx - 1].chars().all(|c| "DAHSRNVL".contains(c));
        let name_end = if attrs_present { size_idx - 1 } else { size_idx };
        // Recover the original spacing of the name from the line itself.
        let trimmed = line.trim_start();
        let name = if name_end == 1 {
            fields[0].to_string()
        } else {
            let last = fields[name_end - 1];
            let end = trimmed.find(last).map(|i| i + last.len()).unwrap_or(0);
            trimmed[..end].to_string()
        };
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names
}

/// Runs a server in this test process (its own thread and runtime) on a
/// free loopback port, with the share `data` in a temp dir and the given
/// users, for wire-level tests that need no binary; with a journal hook
/// when one is given. Returns once it accepts connections.
pub fn start_in_process(
    users: &[(&str, &str)],
    journal: Option<Arc<dyn server::journal::Journal>>,
) -> (std::net::SocketAddr, tempfile::TempDir) {
    start_in_process_with(users, journal, |_| {})
}

/// [`start_in_process`] with the configuration changed by `tune` first
/// (limits, signing, encryption...).
pub fn start_in_process_with(
    users: &[(&str, &str)],
    journal: Option<Arc<dyn server::journal::Journal>>,
    tune: impl FnOnce(&mut server::config::Config),
) -> (std::net::SocketAddr, tempfile::TempDir) {
    use server::config::{Config, ShareConfig};
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = Config { listen: vec![addr], ..Config::default() };
    cfg.shares.push(ShareConfig::new("data", dir.path()));
    cfg.inline_users.extend(users.iter().map(|(u, p)| (u.to_string(), p.to_string())));
    tune(&mut cfg);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        match journal {
            Some(j) => rt.block_on(server::run_with_journal(cfg, j, std::future::pending())).unwrap(),
            None => rt.block_on(server::run(cfg, std::future::pending())).unwrap(),
        }
    });
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr) {
            // The probe counts against a per-address connection limit
            // until the server sees it close.
            drop(s);
            std::thread::sleep(Duration::from_millis(50));
            return (addr, dir);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("server did not start");
}

/// Sends one SMB2 request on a raw connection and reads one answer. The request is signed with
/// AES-CMAC and key `sign` when given. For wire-level tests.
pub fn wire_call(
    s: &mut TcpStream,
    message_id: u64,
    command: u16,
    session_id: u64,
    body: &[u8],
    sign: Option<&[u8]>,
) -> Answer {
    use protocol::crypto::signing::{self, SigningAlgorithm};
    use protocol::header::{flags, Header};
    let mut m = bytes::BytesMut::new();
    Header { command, message_id, credits: 64, credit_charge: 1, session_id, ..Default::default() }.encode(&mut m);
    m.extend_from_slice(body);
    let mut m = m.to_vec();
    if let Some(k) = sign {
        m[16..20].copy_from_slice(&(flags::SIGNED).to_le_bytes());
        signing::sign(SigningAlgorithm::AesCmac, k, &mut m);
    }
    let mut f = vec![0u8, (m.len() >> 16) as u8, (m.len() >> 8) as u8, m.len() as u8];
    f.extend_from_slice(&m);
    s.write_all(&f).unwrap();
    let mut h = [0u8; 4];
    s.read_exact(&mut h).expect("an answer");
    let len = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
    let mut msg = vec![0u8; len];
    s.read_exact(&mut msg).unwrap();
    Answer { hdr: Header::parse(&msg).unwrap(), msg }
}

/// One answer off the wire ([`wire_call`]).
pub struct Answer {
    pub hdr: protocol::header::Header,
    /// The whole message, header included.
    pub msg: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> protocol::NtStatus {
        protocol::NtStatus(self.hdr.status)
    }

    /// Is the answer signed, and with AES-CMAC key `key`?
    pub fn signed_with(&self, key: &[u8]) -> bool {
        use protocol::crypto::signing::{self, SigningAlgorithm};
        self.hdr.flags & protocol::header::flags::SIGNED != 0
            && signing::verify(SigningAlgorithm::AesCmac, key, &self.msg)
    }
}
