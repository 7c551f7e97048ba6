//! The hub's own resources, read from `/proc/<pid>` when `--hub-pid` is given: resident memory
//! (`VmRSS` in `status`) and CPU time (`utime + stime` in `stat`, in clock ticks).
//!
//! The run reads them at its phase boundaries (before connecting, after connecting, after
//! `--hold`, at the start and end of the load phase, around a storm), and the report turns them
//! into RSS per held connection and CPU per delivered event. A probe that cannot read (no
//! `/proc`, the pid gone) gives `None` and the report leaves those fields empty: it warns once,
//! it never fails the run.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// One reading of the hub's resources.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HubSample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User plus system CPU time since the hub started, seconds.
    pub cpu_s: f64,
}

/// Reads one process's `/proc` files.
#[derive(Debug)]
pub struct HubProbe {
    pid: u32,
    /// More processes counted with it (a cluster's other nodes).
    more: Vec<u32>,
    ticks_per_second: f64,
    warned: AtomicBool,
}

impl HubProbe {
    /// A probe of process `pid`.
    pub fn new(pid: u32) -> HubProbe {
        HubProbe {
            pid,
            more: Vec::new(),
            ticks_per_second: clock_ticks_per_second(),
            warned: AtomicBool::new(false),
        }
    }

    /// A probe of every process in `pids` (their sums), if any.
    pub fn of(pids: &[u32]) -> Option<HubProbe> {
        let (first, more) = pids.split_first()?;
        let mut probe = HubProbe::new(*first);
        probe.more = more.to_vec();
        Some(probe)
    }

    /// The pid watched.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads RSS and CPU now; `None` (with one warning on stderr per run) when either file
    /// cannot be read or parsed.
    pub fn sample(&self) -> Option<HubSample> {
        match self.try_sample() {
            Ok(sample) => Some(sample),
            Err(why) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "warning: --hub-pid {}: {why}; the hub's memory and CPU figures will be \
                         missing",
                        self.pid
                    );
                }
                None
            }
        }
    }

    fn try_sample(&self) -> Result<HubSample, String> {
        let mut total = HubSample {
            rss_kib: 0,
            cpu_s: 0.0,
        };
        for pid in std::iter::once(self.pid).chain(self.more.iter().copied()) {
            let read = |file: &str| {
                let path = format!("/proc/{pid}/{file}");
                std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))
            };
            let rss_kib = parse_vm_rss_kib(&read("status")?).ok_or("no VmRSS in its status")?;
            let ticks = parse_cpu_ticks(&read("stat")?).ok_or("unreadable stat line")?;
            #[allow(clippy::cast_precision_loss)]
            let cpu_s = ticks as f64 / self.ticks_per_second;
            total.rss_kib += rss_kib;
            total.cpu_s += cpu_s;
        }
        Ok(total)
    }

    /// The hub's soft open-file limit, from `/proc/<pid>/limits`.
    pub fn open_files_limit(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/limits", self.pid)).ok()?;
        crate::preflight::parse_open_files(&text)
    }
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `utime` and `stime`; 100 if it cannot be read.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: `sysconf` reads a configuration value and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[allow(clippy::cast_precision_loss)]
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB (the kernel writes `kB`).
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.trim_start_matches("VmRSS:").split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After the name: state (field 3) is index 0, so utime (14) is 11 and stime (15) is 12.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The readings taken at the run's phase boundaries (`None` where the probe could not read, or
/// the phase did not happen).
#[derive(Debug, Clone, Copy, Default)]
pub struct HubReadings {
    /// Before the first connection opened.
    pub before: Option<HubSample>,
    /// Once every connection was open (or had failed), before any hold or load.
    pub after_connect: Option<HubSample>,
    /// At the end of `--hold` (only with a hold).
    pub after_hold: Option<HubSample>,
    /// When the load phase began.
    pub load_start: Option<HubSample>,
    /// When the drain after the load phase ended.
    pub load_end: Option<HubSample>,
    /// When the first storm connection was due.
    pub storm_start: Option<HubSample>,
    /// When the last storm connection was accepted or failed.
    pub storm_end: Option<HubSample>,
}

/// The hub's figures in the report; a field is `null` when a reading it needs is missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubReport {
    /// The pid watched.
    pub pid: u32,
    /// RSS before connecting, KiB.
    pub rss_before_kib: Option<u64>,
    /// RSS with every connection open and idle, right after connecting, KiB.
    pub rss_after_connect_kib: Option<u64>,
    /// RSS at the end of `--hold`, KiB.
    pub rss_after_hold_kib: Option<u64>,
    /// RSS after the load phase and its drain, before closing, KiB.
    pub rss_end_kib: Option<u64>,
    /// (idle RSS − RSS before) / connections held then, KiB; the idle RSS is the one at the end
    /// of `--hold` when there was one (allocators settle), else right after connecting.
    pub rss_per_conn_kib: Option<f64>,
    /// Hub CPU while the connections opened (TLS-free upgrades, token checks, joins), seconds.
    pub cpu_connect_s: Option<f64>,
    /// Hub CPU from the start of the load phase to the end of the drain, seconds.
    pub cpu_load_s: Option<f64>,
    /// `cpu_load_s` over the load phase's length, in percent of one core.
    pub cpu_load_percent: Option<f64>,
    /// `cpu_load_s` per event delivered to a measured member, microseconds.
    pub cpu_us_per_event: Option<f64>,
    /// Hub CPU from the first storm connection's due time to the last one's outcome, seconds.
    pub cpu_storm_s: Option<f64>,
}

/// What the hub figures are divided by.
#[derive(Debug, Clone, Copy)]
pub struct Divisors {
    /// Connections held when the idle RSS was read.
    pub held_idle: u64,
    /// Events delivered to measured members (load phase and drain).
    pub delivered: u64,
    /// The load phase's real length, seconds.
    pub load_seconds: f64,
}

impl HubReport {
    /// The figures of process `pid` from its readings.
    pub fn new(pid: u32, r: &HubReadings, d: Divisors) -> HubReport {
        let rss = |s: Option<HubSample>| s.map(|s| s.rss_kib);
        let cpu = |a: Option<HubSample>, b: Option<HubSample>| Some((b?.cpu_s - a?.cpu_s).max(0.0));
        let idle = r.after_hold.or(r.after_connect);
        #[allow(clippy::cast_precision_loss)]
        let rss_per_conn_kib = match (r.before, idle) {
            (Some(b), Some(i)) if d.held_idle > 0 => {
                Some((i.rss_kib as f64 - b.rss_kib as f64) / d.held_idle as f64)
            }
            _ => None,
        };
        let cpu_load_s = cpu(r.load_start, r.load_end);
        #[allow(clippy::cast_precision_loss)]
        let cpu_us_per_event = cpu_load_s
            .filter(|_| d.delivered > 0)
            .map(|s| s * 1e6 / d.delivered as f64);
        HubReport {
            pid,
            rss_before_kib: rss(r.before),
            rss_after_connect_kib: rss(r.after_connect),
            rss_after_hold_kib: rss(r.after_hold),
            rss_end_kib: rss(r.load_end),
            rss_per_conn_kib,
            cpu_connect_s: cpu(r.before, r.after_connect),
            cpu_load_s,
            cpu_load_percent: cpu_load_s
                .filter(|_| d.load_seconds > 0.0)
                .map(|s| s * 100.0 / d.load_seconds),
            cpu_us_per_event,
            cpu_storm_s: cpu(r.storm_start, r.storm_end),
        }
    }
}

/// This process's own CPU use: a harness that saturates its core adds its own delays to every
/// latency it reports, so the report says how busy it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HarnessCpu {
    /// CPU from the start of the load phase to the end of the drain, seconds.
    pub cpu_load_s: Option<f64>,
    /// The same in percent of one core.
    pub cpu_load_percent: Option<f64>,
    /// CPU while the storm's connections were opening, seconds.
    pub cpu_storm_s: Option<f64>,
    /// The same in percent of one core.
    pub cpu_storm_percent: Option<f64>,
}

impl HarnessCpu {
    /// The figures from this process's readings, the load phase's length and the storm's.
    pub fn new(own: &HubReadings, load_seconds: f64, storm_seconds: Option<f64>) -> HarnessCpu {
        let cpu = |a: Option<HubSample>, b: Option<HubSample>| Some((b?.cpu_s - a?.cpu_s).max(0.0));
        let percent = |cpu: Option<f64>, wall: Option<f64>| {
            let wall = wall.filter(|&w| w > 0.0)?;
            Some(cpu? * 100.0 / wall)
        };
        let cpu_load_s = cpu(own.load_start, own.load_end);
        let cpu_storm_s = cpu(own.storm_start, own.storm_end);
        HarnessCpu {
            cpu_load_s,
            cpu_load_percent: percent(cpu_load_s, Some(load_seconds)),
            cpu_storm_s,
            cpu_storm_percent: percent(cpu_storm_s, storm_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\thub\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  812340 kB\n\
                          VmSize:\t  812340 kB\nVmHWM:\t   45012 kB\nVmRSS:\t   43880 kB\n\
                          RssAnon:\t   30000 kB\nThreads:\t3\n";

    #[test]
    fn rss_is_read_from_the_vmrss_line() {
        assert_eq!(parse_vm_rss_kib(STATUS), Some(43_880));
        assert_eq!(parse_vm_rss_kib("Name:\thub\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\tlots kB\n"), None);
        // A kernel thread has no VmRSS line at all.
        assert_eq!(parse_vm_rss_kib("Name:\tkthreadd\nState:\tS\n"), None);
    }

    #[test]
    fn cpu_is_utime_plus_stime_counted_from_the_last_parenthesis() {
        let stat = "4242 (hub) S 1 4242 4242 0 -1 4194560 1234 0 0 0 350 75 0 0 20 0 3 0 \
                    98765 812340000 10970 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(425));
        // A name with spaces and parentheses does not shift the fields.
        let odd = "7 (my (odd) hub) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(odd), Some(15));
        assert_eq!(parse_cpu_ticks("7 (hub) R 1 2 3"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis at all"), None);
    }

    #[test]
    fn a_dead_pid_gives_no_sample_and_no_panic() {
        // Pids are below 2^22 on Linux; this one cannot exist.
        let probe = HubProbe::new(u32::MAX - 1);
        assert_eq!(probe.sample(), None);
        assert_eq!(probe.sample(), None);
        assert_eq!(probe.open_files_limit(), None);
    }

    #[test]
    fn our_own_process_can_be_read() {
        let probe = HubProbe::new(std::process::id());
        let s = probe.sample().unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
        assert!(probe.open_files_limit().is_some());
    }

    fn at(rss_kib: u64, cpu_s: f64) -> Option<HubSample> {
        Some(HubSample { rss_kib, cpu_s })
    }

    #[test]
    fn the_report_divides_memory_by_connections_and_cpu_by_events() {
        let readings = HubReadings {
            before: at(40_000, 1.0),
            after_connect: at(60_000, 3.0),
            after_hold: None,
            load_start: at(60_500, 3.5),
            load_end: at(61_000, 5.5),
            storm_start: None,
            storm_end: None,
        };
        let d = Divisors {
            held_idle: 2_000,
            delivered: 400_000,
            load_seconds: 4.0,
        };
        let r = HubReport::new(7, &readings, d);
        assert_eq!(r.rss_per_conn_kib, Some(10.0));
        assert_eq!(r.cpu_connect_s, Some(2.0));
        assert_eq!(r.cpu_load_s, Some(2.0));
        assert_eq!(r.cpu_load_percent, Some(50.0));
        assert_eq!(r.cpu_us_per_event, Some(5.0));
        assert_eq!(r.rss_end_kib, Some(61_000));
        assert_eq!(r.cpu_storm_s, None);

        // With a hold, the per-connection figure uses the reading at its end.
        let held = HubReadings {
            after_hold: at(50_000, 3.1),
            ..readings
        };
        assert_eq!(HubReport::new(7, &held, d).rss_per_conn_kib, Some(5.0));
    }

    #[test]
    fn missing_readings_leave_fields_empty() {
        let readings = HubReadings {
            before: None,
            after_connect: at(60_000, 3.0),
            load_start: at(60_500, 3.5),
            load_end: None,
            ..HubReadings::default()
        };
        let d = Divisors {
            held_idle: 0,
            delivered: 0,
            load_seconds: 0.0,
        };
        let r = HubReport::new(7, &readings, d);
        assert_eq!(r.rss_before_kib, None);
        assert_eq!(r.rss_after_connect_kib, Some(60_000));
        assert_eq!(r.rss_per_conn_kib, None);
        assert_eq!(r.cpu_connect_s, None);
        assert_eq!(r.cpu_load_s, None);
        assert_eq!(r.cpu_us_per_event, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["rss_per_conn_kib"].is_null());
    }

    #[test]
    fn the_harness_cpu_is_a_share_of_one_core() {
        let own = HubReadings {
            load_start: at(0, 1.0),
            load_end: at(0, 4.0),
            storm_start: at(0, 2.0),
            storm_end: at(0, 3.5),
            ..HubReadings::default()
        };
        let h = HarnessCpu::new(&own, 4.0, Some(2.0));
        assert_eq!(h.cpu_load_s, Some(3.0));
        assert_eq!(h.cpu_load_percent, Some(75.0));
        assert_eq!(h.cpu_storm_percent, Some(75.0));
        let none = HarnessCpu::new(&own, 0.0, None);
        assert_eq!(
            (none.cpu_load_percent, none.cpu_storm_percent),
            (None, None)
        );
    }
}
