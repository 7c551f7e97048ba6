//! An allowance as configured: `COUNT/UNIT[+BURST]`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// An allowance: `count` per `period`, with up to `burst` at once. Written `COUNT/UNIT[+BURST]`
/// with UNIT one of `s`, `min`, `h`, optionally with a multiplier (e.g. `10/s+100`, `20/h`,
/// `5/15min`); the burst defaults to the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Units per period.
    pub count: u32,
    /// The period.
    pub period: Duration,
    /// Units that may be used at once.
    pub burst: u32,
}

impl Rate {
    /// The time one unit takes to come back.
    pub fn interval(self) -> Duration {
        self.period / self.count.max(1)
    }

    /// How far ahead of now the allowance may be spent.
    pub fn tolerance(self) -> Duration {
        self.interval() * self.burst.max(1)
    }

    /// Units still available at once when the allowance is spent `ahead` of now.
    pub fn remaining(self, ahead: Duration) -> u64 {
        let interval = self.interval().as_nanos().max(1);
        let left = self.tolerance().saturating_sub(ahead).as_nanos() / interval;
        u64::try_from(left).unwrap_or(u64::MAX)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a rate like `10/s`, `300/min+50` or `20/h`");
        let (spec, burst) = match s.trim().split_once('+') {
            Some((spec, burst)) => (spec, Some(burst.trim().parse::<u32>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let (count, unit) = spec.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        // The unit may carry a multiplier: `5/15min`.
        let unit = unit.trim();
        let digits = unit.len() - unit.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let times: u32 = match &unit[..digits] {
            "" => 1,
            n => n.parse().map_err(|_| bad())?,
        };
        let seconds = match &unit[digits..] {
            "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" | "hour" => 3600,
            _ => return Err(bad()),
        };
        if times == 0 {
            return Err(bad());
        }
        let period = Duration::from_secs(seconds * u64::from(times));
        let burst = burst.unwrap_or(count);
        if count == 0 || burst == 0 {
            return Err(format!("`{s}`: the count and the burst must be at least 1"));
        }
        Ok(Rate {
            count,
            period,
            burst,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        let (n, unit) = if secs.is_multiple_of(3600) {
            (secs / 3600, "h")
        } else if secs.is_multiple_of(60) {
            (secs / 60, "min")
        } else {
            (secs, "s")
        };
        match n {
            1 => write!(f, "{}/{unit}+{}", self.count, self.burst),
            n => write!(f, "{}/{n}{unit}+{}", self.count, self.burst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        let r: Rate = "10/s+100".parse().unwrap();
        assert_eq!(
            (r.count, r.period, r.burst),
            (10, Duration::from_secs(1), 100)
        );
        assert_eq!(r.interval(), Duration::from_millis(100));
        assert_eq!(r.tolerance(), Duration::from_secs(10));
        let r: Rate = "20/h".parse().unwrap();
        assert_eq!((r.count, r.burst), (20, 20));
        assert_eq!(r.to_string(), "20/h+20");
        assert_eq!(
            "300/min+50".parse::<Rate>().unwrap().to_string(),
            "300/min+50"
        );
        let r: Rate = "5/15min".parse().unwrap();
        assert_eq!((r.period, r.burst), (Duration::from_secs(900), 5));
        assert_eq!(r.interval(), Duration::from_secs(180));
        assert_eq!(r.to_string(), "5/15min+5");
        for bad in [
            "", "10", "10/d", "0/s", "10/s+0", "x/s", "10/s+y", "5/0min", "5/xmin",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
