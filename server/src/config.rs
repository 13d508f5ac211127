//! Configuration: a TOML file, command-line flags, or the embedded default.
//!
//! ```toml
//! listen = ["127.0.0.1:445"]
//! users_file = "duet-data/users"
//! signing = "enabled"        # or "required"
//! encrypt = false            # require encryption on every share
//! server_name = "DUET"
//! model = "Duet"             # what macOS clients are told (AAPL); Finder's icon
//! multichannel = true        # offer SMB 3.x multichannel (session binding)
//! max_credits = 8192         # most credits a connection may hold
//! state_dir = "duet-data"    # the node's state (boot generation); default: users_file's directory
//! admin_socket = "duet-data/admin.sock"  # `duet status`; default: admin.sock in the state dir
//!
//! [journal]                # every key optional; these are `duet serve`'s defaults
//! enabled = true             # a library-run server (tests) keeps none unless set
//! path = "duet-data/nvram"   # default: nvram in the state dir, else duet-data/nvram
//! size = 134217728           # bytes, fixed when the file is created
//! policy = "group"           # "group", "msync" (both survive power loss), "process" (a killed process only),
//!                            # "pmem" (power loss; the file on a DAX file system, else refused)
//!
//! [limits]                 # every key optional; these are the defaults
//! login_failures_before_delay = 5     # per client address, within the window
//! login_failure_delay_max_ms = 2000   # each further failure waits longer, up to this
//! login_failure_window_s = 60         # a quiet address starts afresh after this
//! login_failures_per_connection = 10  # then the connection is closed
//! max_connections = 4096     # in all (at most half the file descriptors)
//! max_connections_per_address = 256  # per client IPv4 address or IPv6 /64
//! max_sessions = 16384       # in all
//! max_sessions_per_connection = 64
//! max_opens = 131072         # in all (at most the descriptors left over)
//! max_opens_per_session = 16384  # at most half of max_opens
//! max_pending_per_connection = 512  # CHANGE_NOTIFY, blocking LOCK, waiting CREATE
//! max_dir_watches = 8192     # directories watched with inotify for change notify, in all
//! max_dir_watches_per_client = 2048  # the same, for one client's watches
//! handshake_timeout_s = 30   # to NEGOTIATE and authenticate a session
//! frame_timeout_s = 30       # for a request frame, once its first byte came
//! send_timeout_s = 60        # a client that reads none of its replies this long
//! reply_queue_mib = 16       # replies queued per connection before reading stops
//! reply_queue_total_mib = 256  # the same, across all connections
//!
//! [pair]                   # optional: a member of a pair (see `pair::config`)
//! cluster = 7
//! node = 1
//! listen = "127.0.0.1:7001"  # this node's interconnect address
//! partner = "127.0.0.1:7002" # the partner's
//! incarnation = 1
//!
//! [[share]]
//! name = "duet"
//! path = "duet-data/share"
//! encrypt = false            # require encryption on this share
//! guest_ok = false           # allow guest/anonymous sessions on this share
//! read_only = false
//! continuous_availability = false  # persistent handles (DH2Q with the persistent flag)
//! time_machine = false       # a Time Machine destination for macOS (AAPL FULL_SYNC, FLUSH = fsync)
//! time_machine_max_size = 0  # bytes Time Machine may use there, reported as the volume's size (0: all)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Signing policy of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Signing {
    /// Sign when the client asks or when the session is not guest.
    #[default]
    Enabled,
    /// Every non-guest session must sign.
    Required,
}

/// One served directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareConfig {
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub guest_ok: bool,
    #[serde(default)]
    pub read_only: bool,
    /// A continuously available share ([MS-SMB2] 3.3.1.6 Share.IsCA): its
    /// tree connects carry SMB2_SHARE_CAP_CONTINUOUS_AVAILABILITY and a
    /// DH2Q asking for a persistent handle gets one (3.3.5.9.10).
    #[serde(default)]
    pub continuous_availability: bool,
    /// A Time Machine destination, as Samba's `fruit:time machine`: the
    /// AAPL volume capabilities carry FULL_SYNC ([`protocol::msg::aapl`]),
    /// and FLUSH is a full `fsync` (data and metadata) of the file, which
    /// is what macOS's `F_FULLFSYNC` asks of the server.
    #[serde(default)]
    pub time_machine: bool,
    /// On a Time Machine share, the most its backups may use, in bytes (0:
    /// no limit): the volume's size is reported as this, and its free
    /// space as what the sparse bundles leave of it ([`crate::fs::tmsize`];
    /// Samba's `fruit:time machine max size`). macOS stops backing up when
    /// it is full and drops old backups.
    #[serde(default)]
    pub time_machine_max_size: u64,
    #[serde(default)]
    pub comment: String,
}

impl ShareConfig {
    /// A share named `name` of the folder `path`, every option as a
    /// configuration file leaves it when it does not say.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ShareConfig {
        ShareConfig {
            name: name.into(),
            path: path.into(),
            encrypt: false,
            guest_ok: false,
            read_only: false,
            continuous_availability: false,
            time_machine: false,
            time_machine_max_size: 0,
            comment: String::new(),
        }
    }
}

/// When a journal record counts as durable (`[journal] policy`), named for
/// what an acknowledged answer then survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JournalPolicy {
    /// Group commit: one `msync` covers every record appended meanwhile.
    /// Survives power loss (of the file's medium).
    #[default]
    Group,
    /// One `msync` per record. Survives power loss; slower than `group`.
    Msync,
    /// No sync: a record is durable once it is in the shared mapping, which
    /// the kernel keeps when the process dies. Survives a killed process
    /// (SIGKILL, a crash), not a power loss or a kernel crash.
    Process,
    /// Persistent memory (a file on a DAX file system over an NVDIMM): the
    /// journal is mapped with `MAP_SYNC`, and a record is durable once its
    /// cache lines are flushed and fenced. Survives power loss; refused at
    /// start when the file is not on a DAX file system.
    Pmem,
}

impl JournalPolicy {
    /// The policy's name as configured and as `duet status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            JournalPolicy::Group => "group",
            JournalPolicy::Msync => "msync",
            JournalPolicy::Process => "process",
            JournalPolicy::Pmem => "pmem",
        }
    }

    /// Parses a configured name.
    pub fn parse(s: &str) -> Result<JournalPolicy, ConfigError> {
        match s {
            "group" => Ok(JournalPolicy::Group),
            "msync" => Ok(JournalPolicy::Msync),
            "process" => Ok(JournalPolicy::Process),
            "pmem" => Ok(JournalPolicy::Pmem),
            other => Err(ConfigError::Invalid(format!(
                "journal policy must be group, msync, process or pmem, not {other:?}"
            ))),
        }
    }

    /// Whether a record is durable only once synced: then an operation is
    /// retired only after the file data it wrote is on stable storage too.
    pub fn survives_power_loss(self) -> bool {
        !matches!(self, JournalPolicy::Process)
    }

    /// What an acknowledged answer survives under the policy, as `duet
    /// status` says it.
    pub fn survives(self) -> &'static str {
        match self {
            JournalPolicy::Group | JournalPolicy::Msync => "power loss",
            JournalPolicy::Pmem => "power loss (on DAX/NVDIMM)",
            JournalPolicy::Process => "a killed process only",
        }
    }
}

/// The `[journal]` section: the NVRAM journal that makes sessions survive a
/// restart ([`crate::restart`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Keep a journal. Unset: `duet serve` does, a server run as a library
    /// does not ([`Config::journal_default`]).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The journal file. Unset: `nvram` in the state directory, else
    /// `duet-data/nvram`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Its size in bytes, fixed when it is created.
    #[serde(default = "default_journal_size")]
    pub size: u64,
    #[serde(default)]
    pub policy: JournalPolicy,
}

/// 128 MiB: room for a few hundred large WRITEs in flight, and for a
/// checkpoint of a hundred thousand opens.
pub const DEFAULT_JOURNAL_SIZE: u64 = 128 << 20;

fn default_journal_size() -> u64 {
    DEFAULT_JOURNAL_SIZE
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { enabled: None, path: None, size: DEFAULT_JOURNAL_SIZE, policy: JournalPolicy::Group }
    }
}

/// Parses a size with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| ConfigError::Invalid(format!("not a size: {s:?} (bytes, or a number with K, M or G)")))
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    #[serde(default)]
    pub signing: Signing,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// The model string a macOS client's AAPL server query is answered
    /// with (Samba's `fruit:model`); Finder picks the server's icon by it.
    #[serde(default = "default_model")]
    pub model: String,
    /// Offer multichannel (SMB2_GLOBAL_CAP_MULTI_CHANNEL, session binding)
    /// on SMB 3.x connections.
    #[serde(default = "default_true")]
    pub multichannel: bool,
    /// The most credits a connection may hold, i.e. the span of its command
    /// sequence window ([MS-SMB2] 3.3.1.1, 3.3.1.2): requests in flight, and
    /// 64 KiB of response each. The I/O sizes offered shrink to fit
    /// (64 KiB per credit) when it is below 128.
    #[serde(default = "default_max_credits")]
    pub max_credits: u16,
    #[serde(default, rename = "share")]
    pub shares: Vec<ShareConfig>,
    /// Users given directly (name, password), e.g. from `--user`.
    #[serde(skip)]
    pub inline_users: Vec<(String, String)>,
    /// The node's state directory: the boot generation that keeps ids
    /// unique across restarts lives there (`state::id_alloc`). Unset, it is the
    /// users file's directory ([`Config::state_dir`]); with neither, the
    /// generation is random.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The admin socket that `duet status` and `duet close-handle` talk to
    /// ([`crate::admin`]). Set, the server fails to start when it cannot
    /// listen there.
    #[serde(default)]
    pub admin_socket: Option<PathBuf>,
    /// Unset `admin_socket`: listen on [`Config::admin_socket_path`] anyway
    /// (`duet serve` does; a server run as a library, in tests, does not),
    /// and only warn when that fails.
    #[serde(skip)]
    pub admin_socket_default: bool,
    /// Bounds on what a client can make the server do.
    #[serde(default)]
    pub limits: Limits,
    /// The journal ([`JournalConfig`]).
    #[serde(default)]
    pub journal: JournalConfig,
    /// Unset `journal.enabled`: keep a journal anyway (`duet serve` does; a
    /// server run as a library, in tests, does not).
    #[serde(skip)]
    pub journal_default: bool,
    /// The pair this node is a member of ([`crate::pair`]); `None`: alone.
    #[serde(default)]
    pub pair: Option<crate::pair::config::PairConfig>,
}

fn default_listen() -> Vec<SocketAddr> {
    vec!["127.0.0.1:445".parse().expect("literal address")]
}

fn default_true() -> bool {
    true
}

/// Windows Server's and Samba's default.
fn default_max_credits() -> u16 {
    8192
}

/// The longest model string (it goes into every AAPL reply).
const MAX_MODEL_LEN: usize = 64;

fn default_model() -> String {
    "Duet".to_string()
}

fn default_server_name() -> String {
    "DUET".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            users_file: None,
            signing: Signing::Enabled,
            encrypt: false,
            server_name: default_server_name(),
            model: default_model(),
            multichannel: true,
            max_credits: default_max_credits(),
            shares: Vec::new(),
            inline_users: Vec::new(),
            state_dir: None,
            admin_socket: None,
            admin_socket_default: false,
            limits: Limits::default(),
            journal: JournalConfig::default(),
            journal_default: false,
            pair: None,
        }
    }
}

/// Bounds on what clients can make the server do and hold (the `[limits]`
/// section). Every field has a default; a file names only those it
/// changes. Over a count limit a new connection is closed at once, and a
/// new session or open fails with STATUS_INSUFFICIENT_RESOURCES
/// (STATUS_REQUEST_NOT_ACCEPTED for sessions per connection); see
/// [`crate::limits`] for how the descriptor limit caps `max_connections`
/// and `max_opens`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Failed logons from one client address (within
    /// `login_failure_window_s` of each other) that are answered at once;
    /// after them, every logon from that address waits before its answer
    /// (`state::throttle`).
    pub login_failures_before_delay: u32,
    /// The longest such wait, in milliseconds. The first is 100 ms, and
    /// each further failure doubles it up to this.
    pub login_failure_delay_max_ms: u64,
    /// Seconds without a failure after which an address starts afresh.
    pub login_failure_window_s: u64,
    /// Failed logons one connection may make; the last is answered and the
    /// connection closed. 0: no limit.
    pub login_failures_per_connection: u32,
    /// TCP connections in all.
    pub max_connections: usize,
    /// TCP connections from one client address (an IPv6 client counts by
    /// its /64 prefix).
    pub max_connections_per_address: usize,
    /// Sessions in all, authenticated or being set up.
    pub max_sessions: usize,
    /// Sessions set up, being set up or bound on one connection.
    pub max_sessions_per_connection: usize,
    /// Opens (file, directory and pipe handles) in all, durable handles
    /// kept for a reconnect included.
    pub max_opens: usize,
    /// Opens in one session (never more than half of `max_opens`).
    pub max_opens_per_session: usize,
    /// Requests answered STATUS_PENDING and not yet completed
    /// (CHANGE_NOTIFY, blocking LOCK, CREATE waiting for an oplock break)
    /// per connection ([MS-SMB2] 3.3.4.2).
    pub max_pending_per_connection: usize,
    /// Directories watched with inotify for change notify, in all (each
    /// costs the kernel about 1 KiB, and counts against
    /// `fs.inotify.max_user_watches`).
    pub max_dir_watches: usize,
    /// The same, for the watches of one client (by ClientGuid): a
    /// WATCH_TREE request on a large tree watches no more than this many
    /// of its directories.
    pub max_dir_watches_per_client: usize,
    /// Seconds a connection may go without an authenticated session
    /// (from its start, or since its last session ended) before it is
    /// closed.
    pub handshake_timeout_s: u64,
    /// Seconds a request frame may take to arrive whole once its first
    /// bytes have, before the connection is closed.
    pub frame_timeout_s: u64,
    /// Seconds the server waits for a client to read any of its replies
    /// before it closes the connection.
    pub send_timeout_s: u64,
    /// MiB of replies queued for one connection beyond which its requests
    /// are no longer read (back-pressure).
    pub reply_queue_mib: usize,
    /// MiB of replies queued across all connections beyond which a
    /// connection with replies of its own still queued is not read.
    pub reply_queue_total_mib: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            login_failures_before_delay: 5,
            login_failure_delay_max_ms: 2000,
            login_failure_window_s: 60,
            login_failures_per_connection: 10,
            max_connections: 4096,
            max_connections_per_address: 256,
            max_sessions: 16384,
            max_sessions_per_connection: 64,
            max_opens: 131072,
            max_opens_per_session: 16384,
            max_pending_per_connection: 512,
            max_dir_watches: 8192,
            max_dir_watches_per_client: 2048,
            handshake_timeout_s: 30,
            frame_timeout_s: 30,
            send_timeout_s: 60,
            reply_queue_mib: 16,
            reply_queue_total_mib: 256,
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("max_connections", self.max_connections),
            ("max_connections_per_address", self.max_connections_per_address),
            ("max_sessions", self.max_sessions),
            ("max_sessions_per_connection", self.max_sessions_per_connection),
            ("max_opens", self.max_opens),
            ("max_opens_per_session", self.max_opens_per_session),
            ("max_pending_per_connection", self.max_pending_per_connection),
            ("max_dir_watches", self.max_dir_watches),
            ("max_dir_watches_per_client", self.max_dir_watches_per_client),
            ("reply_queue_mib", self.reply_queue_mib),
            ("reply_queue_total_mib", self.reply_queue_total_mib),
        ];
        let secs = [
            ("handshake_timeout_s", self.handshake_timeout_s),
            ("frame_timeout_s", self.frame_timeout_s),
            ("send_timeout_s", self.send_timeout_s),
        ];
        for (name, v) in counts.into_iter().chain(secs.map(|(n, v)| (n, v as usize))) {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("limits.{name} must be at least 1")));
            }
        }
        // Sizes beyond these would overflow the byte counts.
        for (name, v) in
            [("reply_queue_mib", self.reply_queue_mib), ("reply_queue_total_mib", self.reply_queue_total_mib)]
        {
            if v > 1 << 20 {
                return Err(ConfigError::Invalid(format!("limits.{name} is larger than 1 TiB")));
            }
        }
        Ok(())
    }
}

/// A configuration problem, reported before the server starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file. Relative paths in it are taken relative to the file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for s in &mut cfg.shares {
            if s.path.is_relative() {
                s.path = base.join(&s.path);
            }
        }
        if let Some(u) = &mut cfg.users_file {
            if u.is_relative() {
                *u = base.join(&u);
            }
        }
        if let Some(d) = &mut cfg.state_dir {
            if d.is_relative() {
                *d = base.join(&d);
            }
        }
        if let Some(a) = &mut cfg.admin_socket {
            if a.is_relative() {
                *a = base.join(&a);
            }
        }
        if let Some(j) = &mut cfg.journal.path {
            if j.is_relative() {
                *j = base.join(&j);
            }
        }
        if let Some(d) = cfg.pair.as_mut().and_then(|p| p.storage.as_mut()) {
            if d.is_relative() {
                *d = base.join(&d);
            }
        }
        Ok(cfg)
    }

    /// The state directory in effect: `state_dir`, else the directory of
    /// the users file, else none.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.clone().or_else(|| {
            let parent = self.users_file.as_deref()?.parent()?;
            Some(if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() })
        })
    }

    /// The journal file in effect, `None` when the server keeps no journal.
    pub fn journal_path(&self) -> Option<PathBuf> {
        if !self.journal.enabled.unwrap_or(self.journal_default) {
            return None;
        }
        Some(
            self.journal
                .path
                .clone()
                .unwrap_or_else(|| self.state_dir().unwrap_or_else(|| PathBuf::from("duet-data")).join("nvram")),
        )
    }

    /// Where the admin socket is: `admin_socket`, else `admin.sock` in the
    /// state directory, else `duet-data/admin.sock`.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.state_dir().unwrap_or_else(|| PathBuf::from("duet-data")).join("admin.sock"))
    }

    /// Checks what can be checked before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shares.is_empty() {
            return Err(ConfigError::Invalid("no shares configured".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.shares {
            let key = s.name.to_lowercase();
            if key == "ipc$" || s.name.is_empty() || s.name.contains(['\\', '/', ':']) {
                return Err(ConfigError::Invalid(format!("invalid share name {:?}", s.name)));
            }
            if !seen.insert(key) {
                return Err(ConfigError::Invalid(format!("share {:?} configured twice", s.name)));
            }
        }
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid("no listen address".into()));
        }
        if self.max_credits == 0 {
            return Err(ConfigError::Invalid("max_credits must be at least 1".into()));
        }
        if self.model.is_empty() || self.model.len() > MAX_MODEL_LEN {
            return Err(ConfigError::Invalid(format!(
                "model must be 1 to {MAX_MODEL_LEN} bytes, not {:?}",
                self.model
            )));
        }
        self.limits.validate()?;
        if let Some(p) = &self.pair {
            p.validate().map_err(|e| ConfigError::Invalid(e.0))?;
            for name in p.shares.iter().chain(&p.partner_shares) {
                if !self.shares.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
                    return Err(ConfigError::Invalid(format!(
                        "pair: share set names {name:?}, which is not configured"
                    )));
                }
            }
            if self.journal_path().is_none() {
                return Err(ConfigError::Invalid("a pair member needs its journal (the partner mirrors it)".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_file_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(
            &p,
            r#"
listen = ["127.0.0.1:4450"]
users_file = "users"
signing = "required"
[[share]]
name = "data"
path = "share"
encrypt = true
"#,
        )
        .unwrap();
        let cfg = Config::from_file(&p).unwrap();
        assert_eq!(cfg.listen[0].port(), 4450);
        assert_eq!(cfg.signing, Signing::Required);
        assert_eq!(cfg.shares[0].path, dir.path().join("share"));
        assert!(cfg.shares[0].encrypt);
        assert!(cfg.multichannel, "multichannel is on unless turned off");
        assert_eq!(cfg.max_credits, 8192);
        assert_eq!(cfg.users_file.as_deref(), Some(dir.path().join("users").as_path()));
        assert!(!cfg.shares[0].time_machine);
        assert_eq!(cfg.model, "Duet");
        cfg.validate().unwrap();
    }

    #[test]
    fn time_machine_share_and_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(&p, "model = \"Xserve\"\n[[share]]\nname = \"tm\"\npath = \"tm\"\ntime_machine = true\n")
            .unwrap();
        let cfg = Config::from_file(&p).unwrap();
        assert!(cfg.shares[0].time_machine);
        assert_eq!(cfg.shares[0].time_machine_max_size, 0, "no quota unless given");
        assert_eq!(cfg.model, "Xserve");
        let quota = "[[share]]\nname = \"tm\"\npath = \"tm\"\ntime_machine = true\ntime_machine_max_size = 32768\n";
        std::fs::write(&p, quota).unwrap();
        assert_eq!(Config::from_file(&p).unwrap().shares[0].time_machine_max_size, 32768);
        cfg.validate().unwrap();
        for bad in [String::new(), "m".repeat(MAX_MODEL_LEN + 1)] {
            assert!(Config { model: bad, ..cfg.clone() }.validate().is_err());
        }
    }

    #[test]
    fn limits_and_state_dir_have_defaults_and_can_be_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(
            &p,
            "state_dir = \"st\"\n[limits]\nlogin_failures_before_delay = 3\n[[share]]\nname = \"a\"\npath = \"a\"\n",
        )
        .unwrap();
        let cfg = Config::from_file(&p).unwrap();
        assert_eq!(cfg.state_dir.as_deref(), Some(dir.path().join("st").as_path()));
        assert_eq!(cfg.limits.login_failures_before_delay, 3);
        assert_eq!(cfg.limits.login_failure_delay_max_ms, Limits::default().login_failure_delay_max_ms);
        assert_eq!(Config::default().limits, Limits::default());
        assert_eq!(Config::default().state_dir(), None);
        let with_users = Config { users_file: Some("users".into()), ..Config::default() };
        assert_eq!(with_users.state_dir(), Some(PathBuf::from(".")), "the users file's directory");
        let both = Config { state_dir: Some("st".into()), ..with_users };
        assert_eq!(both.state_dir(), Some(PathBuf::from("st")));
        std::fs::write(&p, "[limits]\nlogin_failures = 3\n").unwrap();
        assert!(matches!(Config::from_file(&p), Err(ConfigError::Parse(..))));
    }

    #[test]
    fn admin_socket_is_set_or_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(&p, "admin_socket = \"run/admin.sock\"\n").unwrap();
        let cfg = Config::from_file(&p).unwrap();
        assert_eq!(cfg.admin_socket_path(), dir.path().join("run/admin.sock"), "relative to the file");
        assert!(!cfg.admin_socket_default, "a library user opens none unless asked");
        std::fs::write(&p, "state_dir = \"st\"\n").unwrap();
        assert_eq!(Config::from_file(&p).unwrap().admin_socket_path(), dir.path().join("st/admin.sock"));
        assert_eq!(Config::default().admin_socket_path(), PathBuf::from("duet-data/admin.sock"));
    }

    #[test]
    fn journal_is_off_for_a_library_on_for_serve_and_configurable() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        assert_eq!(cfg.journal_path(), None, "a library-run server keeps none by default");
        cfg.journal_default = true;
        assert_eq!(cfg.journal_path(), Some(PathBuf::from("duet-data/nvram")));
        cfg.state_dir = Some("st".into());
        assert_eq!(cfg.journal_path(), Some(PathBuf::from("st/nvram")));
        assert_eq!(cfg.journal.policy, JournalPolicy::Group);
        let p = dir.path().join("duet.toml");
        std::fs::write(&p, "[journal]\nenabled = true\npath = \"j\"\nsize = 1048576\npolicy = \"process\"\n").unwrap();
        let cfg = Config::from_file(&p).unwrap();
        assert_eq!(cfg.journal_path(), Some(dir.path().join("j")));
        assert_eq!(cfg.journal.size, 1 << 20);
        assert_eq!(cfg.journal.policy, JournalPolicy::Process);
        std::fs::write(&p, "[journal]\npolicy = \"fast\"\n").unwrap();
        assert!(Config::from_file(&p).is_err());
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert_eq!(JournalPolicy::parse("pmem").unwrap(), JournalPolicy::Pmem);
        assert_eq!(JournalPolicy::Pmem.name(), "pmem");
        assert!(JournalPolicy::Pmem.survives_power_loss());
        assert_eq!(JournalPolicy::Pmem.survives(), "power loss (on DAX/NVDIMM)");
        std::fs::write(&p, "[journal]\npolicy = \"pmem\"\n").unwrap();
        assert_eq!(Config::from_file(&p).unwrap().journal.policy, JournalPolicy::Pmem);
        assert!(JournalPolicy::parse("dax").is_err());
    }

    #[test]
    fn multichannel_can_be_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(&p, "multichannel = false\n[[share]]\nname = \"a\"\npath = \"a\"\n").unwrap();
        assert!(!Config::from_file(&p).unwrap().multichannel);
        assert!(Config::default().multichannel);
    }

    #[test]
    fn limits_default_and_partial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(&p, "[limits]\nhandshake_timeout_s = 2\nmax_opens_per_session = 10\n").unwrap();
        let cfg = Config::from_file(&p).unwrap();
        assert_eq!(cfg.limits.handshake_timeout_s, 2);
        assert_eq!(cfg.limits.max_opens_per_session, 10);
        assert_eq!(cfg.limits.max_connections, Limits::default().max_connections);
        assert_eq!(Config::default().limits, Limits::default());
        std::fs::write(&p, "[limits]\nmax_conections = 2\n").unwrap();
        assert!(matches!(Config::from_file(&p), Err(ConfigError::Parse(..))), "unknown limit keys are refused");
        let mut cfg = Config::default();
        cfg.shares.push(ShareConfig::new("a", "/tmp"));
        cfg.validate().unwrap();
        cfg.limits.frame_timeout_s = 0;
        assert!(cfg.validate().is_err());
    }

    /// The example in the module doc is the defaults, and parses.
    #[test]
    fn documented_limits_are_the_defaults() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! [limits]").unwrap();
        let toml: String = doc[start..]
            .lines()
            .take_while(|l| l.starts_with("//!") && l.trim_end() != "//!" && !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        #[derive(Deserialize)]
        struct Doc {
            limits: Limits,
        }
        let d: Doc = toml::from_str(&toml).unwrap();
        assert_eq!(d.limits, Limits::default());
    }

    #[test]
    fn rejects_unknown_keys_and_duplicate_shares() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duet.toml");
        std::fs::write(&p, "lisen = []\n").unwrap();
        assert!(matches!(Config::from_file(&p), Err(ConfigError::Parse(..))));
        let mut cfg = Config::default();
        for _ in 0..2 {
            cfg.shares.push(ShareConfig::new("A", "/tmp"));
        }
        assert!(cfg.validate().is_err());
    }
}
