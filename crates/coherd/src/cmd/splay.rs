//! `coherd splay`: sleep a stable or random offset inside a window, then run a command.

use std::process::{Command, ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use coherd_dephase::stable_offset;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Sleep an offset inside a window, then run a command.
#[derive(clap::Args)]
#[command(after_help = "\
Example:
  # In a crontab: every host runs logrotate at its own, fixed minute of the hour.
  0 * * * *  coherd splay --window 1h --job logrotate -- logrotate /etc/logrotate.conf

  # Show the offset this host would wait, in seconds.
  coherd splay --window 10m --job backup --print

The stable offset depends only on the key (the hostname unless --key is given),
the job and the window. SIGTERM and SIGINT are forwarded to the command; the
exit code is the command's (128 + N if it was killed by signal N).")]
pub(crate) struct Args {
    /// The window to spread starts over, e.g. 30s, 10m, 1h, 1d.
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Duration,
    /// The key the stable offset is computed from [default: this machine's hostname].
    #[arg(long)]
    key: Option<String>,
    /// The job name: different jobs on one machine get different offsets.
    #[arg(long, default_value = "")]
    job: String,
    /// `stable`: the same offset on every run; `random`: a fresh uniform offset each run.
    #[arg(long, value_enum, default_value_t = Mode::Stable)]
    mode: Mode,
    /// Only print the offset in seconds; run nothing.
    #[arg(long)]
    print: bool,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required_unless_present = "print", value_name = "CMD")]
    command: Vec<String>,
}

/// How the offset is chosen.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// Hash of key and job: the same offset on every run.
    Stable,
    /// Uniformly random in the window on each run.
    Random,
}

/// Runs `coherd splay`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let offset = match args.mode {
        Mode::Stable => {
            let key = match args.key {
                Some(key) => key,
                None => nix::unistd::gethostname()
                    .context("could not read this machine's hostname; pass --key")?
                    .to_string_lossy()
                    .into_owned(),
            };
            stable_offset(&key, &args.job, args.window)
        }
        Mode::Random => args.window.mul_f64(fastrand::f64()),
    };
    if args.print {
        println!("{:.3}", offset.as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }
    sleep_then_run(offset, &args.command)
}

/// Sleeps `offset` (cut short by SIGTERM or SIGINT), then runs `command`,
/// forwarding those signals to it, and returns its exit code.
fn sleep_then_run(offset: Duration, command: &[String]) -> anyhow::Result<ExitCode> {
    let (program, arguments) = command
        .split_first()
        .context("no command given after `--`")?;

    // A signal goes to the child once it runs; before that, it ends the sleep.
    let child_pid = Arc::new(AtomicI32::new(0));
    let (early_tx, early_rx) = mpsc::channel();
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).context("could not install signal handlers")?;
    let signals_handle = signals.handle();
    let forward_to = Arc::clone(&child_pid);
    let forwarder = thread::spawn(move || {
        for signal in signals.forever() {
            match forward_to.load(Ordering::SeqCst) {
                0 => {
                    let _ = early_tx.send(signal);
                }
                pid => forward(pid, signal),
            }
        }
    });

    let outcome = (|| {
        match early_rx.recv_timeout(offset) {
            Ok(signal) => return Ok(ExitCode::from(signal_exit_code(signal))),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        let mut child = match Command::new(program).args(arguments).spawn() {
            Ok(child) => child,
            Err(err) => {
                // Like a shell: 127 when the command is not found, 126 otherwise.
                eprintln!("error: could not run `{program}`: {err}");
                let code = if err.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                return Ok(ExitCode::from(code));
            }
        };
        let pid = i32::try_from(child.id()).context("child process id out of range")?;
        child_pid.store(pid, Ordering::SeqCst);
        forward_pending(pid, &early_rx);
        let status = child
            .wait()
            .with_context(|| format!("could not wait for `{program}`"))?;
        Ok(ExitCode::from(exit_code(status)))
    })();

    signals_handle.close();
    let _ = forwarder.join();
    outcome
}

/// Forwards signals that arrived between the end of the sleep and the child's start.
fn forward_pending(pid: i32, early: &Receiver<i32>) {
    while let Ok(signal) = early.try_recv() {
        forward(pid, signal);
    }
}

/// Sends `signal` to `pid`; a child that already exited is not an error.
fn forward(pid: i32, signal: i32) {
    if let Ok(signal) = Signal::try_from(signal) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The child's exit code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => signal_exit_code(signal),
        (None, None) => 1,
    }
}

/// The shell convention for "ended by a signal": 128 + the signal number.
fn signal_exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(255)
}
