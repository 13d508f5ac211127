//! The `duet` binary: parses arguments and hands off to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use server::config::{Config, ShareConfig, Signing};

#[derive(Parser)]
#[command(name = "duet", version, about = "Duet: an SMB 2/3 file server pair")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once, at start
enum Command {
    /// Serve shares. With no --config and no --share, serves ./duet-data/share
    /// as "duet" and prints the user and password to use.
    Serve {
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (IP:PORT); repeatable.
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
        /// A share as NAME=DIR; repeatable.
        #[arg(long)]
        share: Vec<String>,
        /// A user as NAME:PASSWORD; repeatable.
        #[arg(long)]
        user: Vec<String>,
        /// A users file (NAME:NTHASH lines, see `duet user add`).
        #[arg(long)]
        users: Option<PathBuf>,
        /// Signing policy: enabled or required.
        #[arg(long)]
        signing: Option<String>,
        /// Require encryption on every share.
        #[arg(long)]
        encrypt: bool,
        /// Allow guest access to this share; repeatable.
        #[arg(long)]
        guest_share: Vec<String>,
        /// Make this share continuously available (persistent handles);
        /// repeatable.
        #[arg(long = "ca")]
        ca: Vec<String>,
        /// Make this share a Time Machine destination for macOS clients
        /// (FULL_SYNC in the AAPL volume capabilities, FLUSH a full fsync);
        /// repeatable.
        #[arg(long = "time-machine")]
        time_machine: Vec<String>,
        /// NAME=SIZE: the most Time Machine may use on that Time Machine
        /// share, reported as its volume size (bytes, or with K, M or G:
        /// Samba's `fruit:time machine max size`); repeatable.
        #[arg(long = "time-machine-max-size")]
        time_machine_max_size: Vec<String>,
        /// The model string macOS clients are told (AAPL server query).
        #[arg(long)]
        model: Option<String>,
        /// The node's state directory (its boot generation, which keeps
        /// session and file ids unique across restarts).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The admin socket for `duet status` (default: admin.sock in the
        /// state directory, else duet-data/admin.sock).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
        /// The journal file that sessions, open files and locks survive a
        /// restart in (default: nvram in the state directory, else
        /// duet-data/nvram; created on first start, mode 0600).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Its size when it is created (bytes; K, M, G suffixes).
        #[arg(long)]
        journal_size: Option<String>,
        /// When an answer counts as safe: group or msync (survive power
        /// loss), process (survives a killed process only), pmem (survives
        /// power loss; the journal on a DAX file system, else refused).
        #[arg(long)]
        journal_policy: Option<String>,
        /// Keep no journal: a restart loses every session and open file.
        #[arg(long, conflicts_with_all = ["journal", "journal_size", "journal_policy"])]
        no_journal: bool,
        /// Log filter, e.g. info or duet=debug.
        #[arg(long, default_value = "info")]
        log_level: String,
        /// A pair member: the pair's cluster id (with --pair-node,
        /// --pair-listen and --pair-partner, or [pair] in the file).
        #[arg(long)]
        pair_cluster: Option<u64>,
        /// This node's id in the pair.
        #[arg(long)]
        pair_node: Option<u16>,
        /// The only node id accepted as partner.
        #[arg(long)]
        pair_partner_node: Option<u16>,
        /// This node's interconnect address (IP:PORT).
        #[arg(long)]
        pair_listen: Option<std::net::SocketAddr>,
        /// The partner's interconnect address (IP:PORT).
        #[arg(long)]
        pair_partner: Option<std::net::SocketAddr>,
        /// The configuration incarnation: the node with the older one refuses
        /// to serve.
        #[arg(long)]
        pair_incarnation: Option<u64>,
        /// The interconnect key's file (the same on both nodes, mode 0600):
        /// each node proves it knows it when a link comes up. Without it,
        /// the storage folder's (made on first start).
        #[arg(long)]
        pair_key: Option<PathBuf>,
        /// The shared storage folder's directory for ownership claims and
        /// storage heartbeats (with the share sets, which takeover needs).
        #[arg(long)]
        pair_storage: Option<PathBuf>,
        /// This node's share set's client address (IP:PORT): the set is
        /// served there instead of --listen.
        #[arg(long)]
        pair_address: Option<std::net::SocketAddr>,
        /// The shares of this node's set (names of --share), comma-separated.
        #[arg(long, value_delimiter = ',')]
        pair_shares: Vec<String>,
        /// The partner's share set's client address (IP:PORT), taken over
        /// when the partner dies.
        #[arg(long)]
        pair_partner_address: Option<std::net::SocketAddr>,
        /// The shares of the partner's set, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pair_partner_shares: Vec<String>,
        /// Ask for this node's set back once the partner holds it and our
        /// mirror of its journal is current (default true).
        #[arg(long)]
        pair_auto_giveback: Option<bool>,
        /// The network interface a set's address is added to (and announced
        /// on) when this node takes the set; without it addresses are not
        /// added (both nodes on one host, as on 127.x).
        #[arg(long)]
        pair_interface: Option<String>,
    },
    /// Show a running server's sessions, open files, retained handles and
    /// journal (root or the server's user only).
    Status {
        /// One JSON document instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Close a retained (disconnected durable) handle that no client will
    /// come back for. ID as `duet status` shows it (0x... hex, or decimal).
    CloseHandle {
        id: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Stop a running server as SIGTERM does: it stops accepting, finishes
    /// the requests in flight, saves its state to the journal (an elective
    /// reboot: the next start restores it) and exits. Waits for the exit.
    Stop {
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// On a pair member: take the partner's share set over (elective: the
    /// partner drains, saves and releases it; this node restores and serves
    /// it). Waits until it serves it, or says why not.
    Takeover {
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// On a pair member: move the set that is away from home back to its
    /// home node (on either node). Refused while either mirror is behind.
    Giveback {
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// On a pair member: move share set SET (its home node's id) to the
    /// other node, whichever way it goes.
    Move {
        set: u16,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Manage the users file.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Inspect an NVRAM journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// A pair on this machine in network namespaces, addresses that move
    /// (root).
    Lab {
        /// The lab's folder (lab.json, storage, the nodes' state and logs).
        #[arg(long, default_value = "duet-lab", global = true)]
        dir: PathBuf,
        #[command(subcommand)]
        command: server::lab::LabCommand,
    },
}

/// Which server `duet status`, `duet close-handle` and `duet stop` ask.
#[derive(clap::Args)]
struct SocketArgs {
    /// The server's admin socket (default: duet-data/admin.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Take the admin socket's place from this configuration file.
    #[arg(long, conflicts_with = "socket")]
    config: Option<PathBuf>,
}

impl SocketArgs {
    fn path(self) -> Result<PathBuf, String> {
        match (self.socket, self.config) {
            (Some(s), _) => Ok(s),
            (None, Some(c)) => Config::from_file(&c).map(|cfg| cfg.admin_socket_path()).map_err(|e| e.to_string()),
            (None, None) => Ok(Config::default().admin_socket_path()),
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add or replace a user. Reads the password from stdin without --password.
    Add {
        name: String,
        #[arg(long, default_value = "duet-data/users")]
        users: PathBuf,
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Print the header, the flag and the records of a journal file.
    Dump { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            share,
            user,
            users,
            signing,
            encrypt,
            guest_share,
            ca,
            time_machine,
            time_machine_max_size,
            model,
            state_dir,
            admin_socket,
            journal,
            journal_size,
            journal_policy,
            no_journal,
            log_level,
            pair_cluster,
            pair_node,
            pair_partner_node,
            pair_listen,
            pair_partner,
            pair_incarnation,
            pair_key,
            pair_storage,
            pair_address,
            pair_shares,
            pair_partner_address,
            pair_partner_shares,
            pair_auto_giveback,
            pair_interface,
        } => {
            server::init_logging(&log_level);
            let mut cfg = match &config {
                Some(p) => match Config::from_file(p) {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                },
                None => Config::default(),
            };
            if !listen.is_empty() {
                cfg.listen = listen;
            }
            for s in &share {
                let Some((name, dir)) = s.split_once('=') else {
                    return fail(format!("--share wants NAME=DIR, got {s:?}"));
                };
                cfg.shares.push(ShareConfig::new(name, dir));
            }
            for u in &user {
                let Some((name, pw)) = u.split_once(':') else {
                    return fail(format!("--user wants NAME:PASSWORD, got {u:?}"));
                };
                cfg.inline_users.push((name.to_string(), pw.to_string()));
            }
            if let Some(u) = users {
                cfg.users_file = Some(u);
            }
            match signing.as_deref() {
                None => {}
                Some("required") => cfg.signing = Signing::Required,
                Some("enabled") => cfg.signing = Signing::Enabled,
                Some(other) => return fail(format!("--signing must be enabled or required, not {other:?}")),
            }
            if encrypt {
                cfg.encrypt = true;
            }
            if state_dir.is_some() {
                cfg.state_dir = state_dir;
            }
            if admin_socket.is_some() {
                cfg.admin_socket = admin_socket;
            }
            cfg.admin_socket_default = true;
            cfg.journal_default = true;
            if no_journal {
                cfg.journal.enabled = Some(false);
            }
            if let Some(j) = journal {
                cfg.journal.enabled = Some(true);
                cfg.journal.path = Some(j);
            }
            if let Some(s) = journal_size {
                match server::config::parse_size(&s) {
                    Ok(n) => cfg.journal.size = n,
                    Err(e) => return fail(e),
                }
            }
            if let Some(p) = journal_policy {
                match server::config::JournalPolicy::parse(&p) {
                    Ok(p) => cfg.journal.policy = p,
                    Err(e) => return fail(e),
                }
            }
            let pair = server::pair::config::PairFlags {
                cluster: pair_cluster,
                node: pair_node,
                partner_node: pair_partner_node,
                listen: pair_listen,
                partner: pair_partner,
                incarnation: pair_incarnation,
                key_file: pair_key,
                storage: pair_storage,
                address: pair_address,
                shares: pair_shares,
                partner_address: pair_partner_address,
                partner_shares: pair_partner_shares,
                auto_giveback: pair_auto_giveback,
                interface: pair_interface,
            };
            match pair.apply(cfg.pair.take()) {
                Ok(p) => cfg.pair = p,
                Err(e) => return fail(e),
            }
            for g in &guest_share {
                match cfg.shares.iter_mut().find(|s| s.name.eq_ignore_ascii_case(g)) {
                    Some(s) => s.guest_ok = true,
                    None => return fail(format!("--guest-share {g:?}: no such share")),
                }
            }
            for c in &ca {
                match cfg.shares.iter_mut().find(|s| s.name.eq_ignore_ascii_case(c)) {
                    Some(s) => s.continuous_availability = true,
                    None => return fail(format!("--ca {c:?}: no such share")),
                }
            }
            for t in &time_machine {
                match cfg.shares.iter_mut().find(|s| s.name.eq_ignore_ascii_case(t)) {
                    Some(s) => s.time_machine = true,
                    None => return fail(format!("--time-machine {t:?}: no such share")),
                }
            }
            for t in &time_machine_max_size {
                let Some((name, size)) = t.split_once('=') else {
                    return fail(format!("--time-machine-max-size {t:?}: NAME=SIZE expected"));
                };
                let bytes = match server::config::parse_size(size) {
                    Ok(b) => b,
                    Err(e) => return fail(format!("--time-machine-max-size {t:?}: {e}")),
                };
                match cfg.shares.iter_mut().find(|s| s.name.eq_ignore_ascii_case(name)) {
                    Some(s) => s.time_machine_max_size = bytes,
                    None => return fail(format!("--time-machine-max-size {t:?}: no such share")),
                }
            }
            if let Some(m) = model {
                cfg.model = m;
            }
            if config.is_none() && cfg.shares.is_empty() {
                if let Err(e) = server::default_setup(&mut cfg) {
                    return fail(e);
                }
            }
            server::alloc::tune();
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            let shutdown = {
                let _runtime = rt.enter();
                server::shutdown_signal()
            };
            match rt.block_on(server::run(cfg, shutdown)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Status { json, socket } => {
            let r = socket.path().and_then(|p| server::admin::client::status(&p, json, &mut std::io::stdout().lock()));
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::CloseHandle { id, socket } => {
            let r =
                socket.path().and_then(|p| server::admin::client::close_handle(&p, &id, &mut std::io::stdout().lock()));
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Stop { socket } => {
            match socket.path().and_then(|p| server::admin::client::stop(&p, &mut std::io::stdout().lock())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Takeover { socket } => pair_command(socket, server::admin::Request::Takeover),
        Command::Giveback { socket } => pair_command(socket, server::admin::Request::Giveback),
        Command::Move { set, socket } => pair_command(socket, server::admin::Request::Move { set }),
        Command::User { command: UserCommand::Add { name, users, password } } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    if let Err(e) = std::io::stdin().read_line(&mut line) {
                        return fail(e);
                    }
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            match server::users::Users::add_to_file(&users, &name, &password) {
                Ok(()) => {
                    println!("user {name} saved in {}", users.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Lab { dir, command } => match server::lab::run(&dir, command) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => fail(e),
        },
        Command::Journal { command: JournalCommand::Dump { path } } => {
            let mut out = std::io::stdout().lock();
            match server::journal_dump(&path, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

/// `duet takeover`, `giveback`, `move`.
fn pair_command(socket: SocketArgs, req: server::admin::Request) -> ExitCode {
    match socket.path().and_then(|p| server::admin::client::pair_command(&p, &req, &mut std::io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("duet: {e}");
    ExitCode::FAILURE
}
