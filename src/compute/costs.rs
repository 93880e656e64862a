//! Compute cost arithmetic (pure: no I/O, no clock).
//!
//! Money is integer [`Centicents`] (hundredths of a US cent; 10 000 per dollar), never floats.
//! Rates are centicents per hour of a started machine, read from `assets/pricing.toml`
//! (embedded at build time).
//!
//! # Rounding rule (additivity)
//!
//! The exact cost of `[start, end)` at `rate` centicents/hour is the rational
//! `rate * (end - start) / 3_600_000`. Rounding each period separately would make the sum of a
//! split period differ from the whole (`floor(a) + floor(b) != floor(a + b)`). Instead, the
//! rounding is anchored to the absolute clock: with `A(t) = floor(rate * t / 3_600_000)` (the
//! centicents a machine started at the unix epoch would have accrued by `t`),
//!
//! ```text
//! cost(rate, start, end) = A(end) - A(start)
//! ```
//!
//! so for any `start <= m <= end`, `cost(start, m) + cost(m, end) = cost(start, end)` exactly
//! (the sum telescopes), and `|cost - exact| < 1` centicent for every single period. Splitting
//! a usage at month boundaries or at a report window therefore never creates or loses money.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::clock::Millis;

/// Money: hundredths of a US cent (1 USD = 10 000 centicents).
pub type Centicents = i64;

/// Milliseconds per hour.
pub const MS_PER_HOUR: i64 = 3_600_000;

/// Milliseconds per day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// The pricing table shipped with Flotilla (`assets/pricing.toml`).
pub const PRICING_TOML: &str = include_str!("../../assets/pricing.toml");

/// Cost errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// The CPU type is not `shared-cpu-<n>x` or `performance-cpu-<n>x`.
    #[error(
        "unknown cpu type {0:?}: expected shared-cpu-<n>x or performance-cpu-<n>x, e.g. shared-cpu-1x"
    )]
    BadCpuType(String),
    /// The size is not a valid Fly guest (memory step or per-CPU bounds, CPU count).
    #[error("invalid size {cpu_type} with {memory_mb} MB: {reason}")]
    BadSize {
        /// CPU type as given.
        cpu_type: String,
        /// Memory as given, MB.
        memory_mb: u32,
        /// What is wrong.
        reason: String,
    },
    /// Neither the table nor a per-kind rule prices this size.
    #[error(
        "no price for {cpu_type} with {memory_mb} MB: not in assets/pricing.toml and no rule for its CPU kind"
    )]
    NoPrice {
        /// CPU type.
        cpu_type: String,
        /// Memory, MB.
        memory_mb: u32,
    },
    /// The pricing file does not parse or is inconsistent.
    #[error("bad pricing table: {0}")]
    BadTable(String),
}

/// Fly CPU kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuKind {
    /// Shared vCPUs (`shared-cpu-Nx`).
    Shared,
    /// Dedicated vCPUs (`performance-cpu-Nx`).
    Performance,
}

impl CpuKind {
    /// The Machines API `guest.cpu_kind` value: `shared` or `performance`.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuKind::Shared => "shared",
            CpuKind::Performance => "performance",
        }
    }
}

/// A Fly CPU preset such as `shared-cpu-1x` (kind + number of vCPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuType {
    /// CPU kind.
    pub kind: CpuKind,
    /// Number of vCPUs (the `N` in `-Nx`).
    pub cpus: u32,
}

impl FromStr for CpuType {
    type Err = CostError;
    /// Parse `shared-cpu-<n>x` / `performance-cpu-<n>x` (n >= 1). Whether `n` is a size Fly
    /// offers is checked by [`Pricing::validate`].
    fn from_str(s: &str) -> Result<Self, CostError> {
        let bad = || CostError::BadCpuType(s.to_string());
        let (kind, rest) = if let Some(r) = s.strip_prefix("shared-cpu-") {
            (CpuKind::Shared, r)
        } else if let Some(r) = s.strip_prefix("performance-cpu-") {
            (CpuKind::Performance, r)
        } else {
            return Err(bad());
        };
        let n = rest.strip_suffix('x').ok_or_else(bad)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
            return Err(bad());
        }
        let cpus: u32 = n.parse().map_err(|_| bad())?;
        Ok(CpuType { kind, cpus })
    }
}

impl fmt::Display for CpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-cpu-{}x", self.kind.as_str(), self.cpus)
    }
}

/// `floor(rate * t / MS_PER_HOUR)`: centicents accrued from the epoch to `t`.
fn accrued(rate_per_hour: Centicents, t: Millis) -> i128 {
    (rate_per_hour as i128 * t as i128).div_euclid(MS_PER_HOUR as i128)
}

/// Cost in centicents of running at `rate_per_hour` (centicents/hour) from `start_ms` to
/// `end_ms` (unix ms). Additive over any split (see the module docs); within 1 centicent of the
/// exact rational cost. Antisymmetric: `cost(r, b, a) == -cost(r, a, b)`, so callers pass
/// `start <= end`.
pub fn cost(rate_per_hour: Centicents, start_ms: Millis, end_ms: Millis) -> Centicents {
    let c = accrued(rate_per_hour, end_ms) - accrued(rate_per_hour, start_ms);
    c.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Cost of the part of `[start, end)` that falls inside `[from, to)`; 0 if they do not overlap.
pub fn cost_within(
    rate_per_hour: Centicents,
    start: Millis,
    end: Millis,
    from: Millis,
    to: Millis,
) -> Centicents {
    let s = start.max(from);
    let e = end.min(to);
    if e <= s { 0 } else { cost(rate_per_hour, s, e) }
}

/// One billable span: a rate over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSpan {
    /// Rate, centicents per hour.
    pub rate_per_hour: Centicents,
    /// Start, unix ms.
    pub start: Millis,
    /// End, unix ms (exclusive).
    pub end: Millis,
}

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m)
}

impl YearMonth {
    /// The month containing `ms` (UTC).
    pub fn of(ms: Millis) -> Self {
        let (year, month) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        YearMonth { year, month }
    }
    /// First millisecond of the month.
    pub fn start_ms(self) -> Millis {
        days_from_civil(self.year, self.month, 1) * MS_PER_DAY
    }
    /// The following month.
    pub fn next(self) -> Self {
        if self.month == 12 {
            YearMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

/// Totals per calendar month (UTC), splitting spans at month boundaries. By additivity the
/// grand total equals the sum of [`cost`] over the whole spans.
pub fn monthly_totals(spans: &[UsageSpan]) -> BTreeMap<YearMonth, Centicents> {
    let mut out = BTreeMap::new();
    for s in spans {
        if s.end <= s.start {
            continue;
        }
        let mut ym = YearMonth::of(s.start);
        let mut cur = s.start;
        while cur < s.end {
            let stop = ym.next().start_ms().min(s.end);
            *out.entry(ym).or_insert(0) += cost(s.rate_per_hour, cur, stop);
            cur = stop;
            ym = ym.next();
        }
    }
    out
}

/// Total over spans clipped to `[from, to)`.
pub fn period_total(spans: &[UsageSpan], from: Millis, to: Millis) -> Centicents {
    spans
        .iter()
        .map(|s| cost_within(s.rate_per_hour, s.start, s.end, from, to))
        .sum()
}

/// Format centicents as dollars with 4 decimals: `12345` -> `$1.2345`, `-5` -> `-$0.0005`.
pub fn format_usd(c: Centicents) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}${}.{:04}", a / 10_000, a % 10_000)
}

/// Format centicents as cents with 2 decimals: `27` -> `0.27¢`.
pub fn format_cents(c: Centicents) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}{}.{:02}¢", a / 100, a % 100)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[serde(default)]
    size: Vec<SizeRow>,
    #[serde(default)]
    kind: BTreeMap<String, KindRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeRow {
    cpu_type: String,
    memory_mb: u32,
    centicents_per_hour: Centicents,
}

/// The per-CPU-kind rule for sizes not in the table, and Fly's guest limits for that kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindRule {
    /// Centicents/hour per vCPU.
    pub per_cpu: Centicents,
    /// Centicents/hour per GB (1024 MB) of memory, prorated per MB and rounded up.
    pub per_gb_memory: Centicents,
    /// Minimum memory per vCPU, MB.
    pub min_mb_per_cpu: u32,
    /// Maximum memory per vCPU, MB.
    pub max_mb_per_cpu: u32,
    /// vCPU counts Fly offers for this kind.
    pub allowed_cpus: Vec<u32>,
}

/// Where a rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    /// An exact row of the table.
    Table,
    /// The per-kind rule.
    Rule,
}

/// A priced size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Centicents per hour.
    pub centicents_per_hour: Centicents,
    /// Table row or rule.
    pub source: RateSource,
}

/// Pricing table: exact rows plus per-kind rules (see `assets/pricing.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    sizes: BTreeMap<(CpuType, u32), Centicents>,
    kinds: BTreeMap<CpuKind, KindRule>,
}

impl Pricing {
    /// The embedded `assets/pricing.toml`.
    pub fn embedded() -> Result<Self, CostError> {
        Self::from_toml(PRICING_TOML)
    }

    /// Parse a pricing table in the `assets/pricing.toml` format.
    pub fn from_toml(s: &str) -> Result<Self, CostError> {
        let f: PricingFile = toml::from_str(s).map_err(|e| CostError::BadTable(e.to_string()))?;
        let mut kinds = BTreeMap::new();
        for (name, rule) in f.kind {
            let kind = match name.as_str() {
                "shared" => CpuKind::Shared,
                "performance" => CpuKind::Performance,
                other => return Err(CostError::BadTable(format!("unknown cpu kind {other:?}"))),
            };
            if rule.per_cpu < 0 || rule.per_gb_memory < 0 {
                return Err(CostError::BadTable(format!("negative rate for {name}")));
            }
            if rule.min_mb_per_cpu == 0 || rule.min_mb_per_cpu > rule.max_mb_per_cpu {
                return Err(CostError::BadTable(format!("bad memory bounds for {name}")));
            }
            kinds.insert(kind, rule);
        }
        let mut sizes = BTreeMap::new();
        for row in f.size {
            let cpu: CpuType = row
                .cpu_type
                .parse()
                .map_err(|e: CostError| CostError::BadTable(e.to_string()))?;
            if row.centicents_per_hour < 0 {
                return Err(CostError::BadTable(format!(
                    "negative rate for {} {} MB",
                    row.cpu_type, row.memory_mb
                )));
            }
            if sizes
                .insert((cpu, row.memory_mb), row.centicents_per_hour)
                .is_some()
            {
                return Err(CostError::BadTable(format!(
                    "duplicate row {} {} MB",
                    row.cpu_type, row.memory_mb
                )));
            }
        }
        Ok(Pricing { sizes, kinds })
    }

    /// Check that `memory_mb` is a valid Fly guest size for `cpu`: a multiple of 256 MB within
    /// the kind's per-CPU bounds, and an offered vCPU count. Kinds without a rule only accept
    /// the exact table sizes.
    pub fn validate(&self, cpu: CpuType, memory_mb: u32) -> Result<(), CostError> {
        let bad = |reason: String| CostError::BadSize {
            cpu_type: cpu.to_string(),
            memory_mb,
            reason,
        };
        if memory_mb == 0 || !memory_mb.is_multiple_of(256) {
            return Err(bad("memory must be a positive multiple of 256 MB".into()));
        }
        let Some(rule) = self.kinds.get(&cpu.kind) else {
            return if self.sizes.contains_key(&(cpu, memory_mb)) {
                Ok(())
            } else {
                Err(CostError::NoPrice {
                    cpu_type: cpu.to_string(),
                    memory_mb,
                })
            };
        };
        if !rule.allowed_cpus.contains(&cpu.cpus) {
            return Err(bad(format!(
                "{} CPUs come in {:?}",
                cpu.kind.as_str(),
                rule.allowed_cpus
            )));
        }
        let (lo, hi) = (
            rule.min_mb_per_cpu.saturating_mul(cpu.cpus),
            rule.max_mb_per_cpu.saturating_mul(cpu.cpus),
        );
        if memory_mb < lo || memory_mb > hi {
            return Err(bad(format!("memory must be between {lo} and {hi} MB")));
        }
        Ok(())
    }

    /// The hourly rate for a size: the table row if there is one, else the kind's rule
    /// `cpus * per_cpu + ceil(memory_mb * per_gb_memory / 1024)`. Validates the size first.
    pub fn rate(&self, cpu: CpuType, memory_mb: u32) -> Result<Rate, CostError> {
        self.validate(cpu, memory_mb)?;
        if let Some(&r) = self.sizes.get(&(cpu, memory_mb)) {
            return Ok(Rate {
                centicents_per_hour: r,
                source: RateSource::Table,
            });
        }
        let rule = self.kinds.get(&cpu.kind).ok_or(CostError::NoPrice {
            cpu_type: cpu.to_string(),
            memory_mb,
        })?;
        let mem = (memory_mb as i64 * rule.per_gb_memory + 1023).div_euclid(1024);
        Ok(Rate {
            centicents_per_hour: cpu.cpus as i64 * rule.per_cpu + mem,
            source: RateSource::Rule,
        })
    }

    /// The table rows, `(cpu type, memory MB, centicents/hour)`, sorted.
    pub fn table(&self) -> Vec<(CpuType, u32, Centicents)> {
        self.sizes.iter().map(|(&(c, m), &r)| (c, m, r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> Pricing {
        Pricing::embedded().unwrap()
    }

    #[test]
    fn seed_rates_are_in_the_table() {
        let p = p();
        let r = |c: &str, m| p.rate(c.parse().unwrap(), m).unwrap();
        assert_eq!(r("shared-cpu-1x", 256).centicents_per_hour, 27);
        assert_eq!(r("shared-cpu-1x", 1024).centicents_per_hour, 79);
        assert_eq!(r("performance-cpu-2x", 4096).centicents_per_hour, 620);
        assert_eq!(r("performance-cpu-2x", 4096).source, RateSource::Table);
    }

    #[test]
    fn rule_prices_unlisted_sizes_and_stays_near_the_table() {
        let p = p();
        let r = p.rate("shared-cpu-4x".parse().unwrap(), 2048).unwrap();
        assert_eq!(r.source, RateSource::Rule);
        assert_eq!(r.centicents_per_hour, 4 * 10 + 138);
        // The rule reproduces (or nearly) every table row.
        for (cpu, mem, table) in p.table() {
            let kinds = &p.kinds[&cpu.kind];
            let rule =
                cpu.cpus as i64 * kinds.per_cpu + (mem as i64 * kinds.per_gb_memory + 1023) / 1024;
            assert!(
                (rule - table).abs() * 100 <= table * 40,
                "{cpu} {mem}: rule {rule} vs table {table}"
            );
        }
    }

    #[test]
    fn invalid_sizes_are_clear_errors() {
        let p = p();
        let e = p.rate("shared-cpu-1x".parse().unwrap(), 300).unwrap_err();
        assert!(e.to_string().contains("multiple of 256"), "{e}");
        let e = p.rate("shared-cpu-1x".parse().unwrap(), 4096).unwrap_err();
        assert!(e.to_string().contains("between 256 and 2048"), "{e}");
        let e = p
            .rate("performance-cpu-3x".parse().unwrap(), 8192)
            .unwrap_err();
        assert!(e.to_string().contains("[1, 2, 4, 8, 16]"), "{e}");
        for bad in [
            "gpu-1x",
            "shared-cpu-x",
            "shared-cpu-01x",
            "shared-cpu-1",
            "",
        ] {
            assert!(bad.parse::<CpuType>().is_err(), "{bad}");
        }
        let only_table = Pricing::from_toml(
            "[[size]]\ncpu_type='shared-cpu-1x'\nmemory_mb=256\ncenticents_per_hour=27\n",
        )
        .unwrap();
        let e = only_table
            .rate("shared-cpu-1x".parse().unwrap(), 512)
            .unwrap_err();
        assert!(matches!(e, CostError::NoPrice { .. }), "{e}");
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert!(
            Pricing::from_toml("[[size]]\ncpu_type='x'\nmemory_mb=1\ncenticents_per_hour=1")
                .is_err()
        );
        assert!(Pricing::from_toml("bogus = 1").is_err());
        let dup = "[[size]]\ncpu_type='shared-cpu-1x'\nmemory_mb=256\ncenticents_per_hour=1\n\
                   [[size]]\ncpu_type='shared-cpu-1x'\nmemory_mb=256\ncenticents_per_hour=2\n";
        assert!(Pricing::from_toml(dup).is_err());
    }

    #[test]
    fn cpu_type_round_trips() {
        for s in ["shared-cpu-1x", "shared-cpu-8x", "performance-cpu-16x"] {
            assert_eq!(s.parse::<CpuType>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn known_costs() {
        // One hour at 27 centicents/hour is 27 centicents, wherever the hour starts.
        assert_eq!(cost(27, 0, MS_PER_HOUR), 27);
        assert_eq!(cost(27, 1_234_567, 1_234_567 + MS_PER_HOUR), 27);
        // 30 days of shared-cpu-1x 1 GB: 79 * 720 = 56 880 centicents = $5.688.
        assert_eq!(cost(79, 0, 30 * MS_PER_DAY), 56_880);
        assert_eq!(format_usd(56_880), "$5.6880");
        assert_eq!(format_cents(27), "0.27¢");
        assert_eq!(format_usd(-5), "-$0.0005");
        assert_eq!(cost(620, 5, 5), 0);
    }

    #[test]
    fn months() {
        let feb29 = 951_782_400_000; // 2000-02-29T00:00:00Z
        assert_eq!(
            YearMonth::of(feb29),
            YearMonth {
                year: 2000,
                month: 2
            }
        );
        assert_eq!(YearMonth::of(feb29).next().start_ms(), feb29 + MS_PER_DAY);
        assert_eq!(
            YearMonth {
                year: 1999,
                month: 12
            }
            .next(),
            YearMonth {
                year: 2000,
                month: 1
            }
        );
        assert_eq!(
            YearMonth {
                year: 1970,
                month: 1
            }
            .start_ms(),
            0
        );
        // A span crossing Feb -> Mar is split exactly at midnight.
        let m = monthly_totals(&[UsageSpan {
            rate_per_hour: 100,
            start: feb29 + 12 * MS_PER_HOUR,
            end: feb29 + 36 * MS_PER_HOUR,
        }]);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![1200, 1200]);
    }

    proptest! {
        /// Additivity over an arbitrary split into many pieces, and closeness to the exact cost.
        #[test]
        fn cost_is_additive_over_any_split(
            rate in 0i64..1_000_000,
            start in -4_000_000_000_000i64..4_000_000_000_000,
            mut cuts in proptest::collection::vec(0i64..400 * MS_PER_DAY, 0..20),
            len in 0i64..400 * MS_PER_DAY,
        ) {
            let end = start + len;
            cuts.iter_mut().for_each(|c| *c = start + *c % (len + 1));
            cuts.sort();
            let mut points = vec![start];
            points.extend(cuts);
            points.push(end);
            let pieces: i64 = points.windows(2).map(|w| cost(rate, w[0], w[1])).sum();
            prop_assert_eq!(pieces, cost(rate, start, end));
            // Within one centicent of the exact rational cost (rate * len / 3.6e6).
            let exact_num = rate as i128 * len as i128;
            let c = cost(rate, start, end) as i128 * MS_PER_HOUR as i128;
            prop_assert!((c - exact_num).abs() < MS_PER_HOUR as i128);
        }

        /// Cost never decreases as the period grows, and is antisymmetric.
        #[test]
        fn cost_is_monotone_and_antisymmetric(rate in 0i64..100_000, a in 0i64..1i64<<42, b in 0i64..1i64<<42, d in 0i64..1i64<<30) {
            prop_assert!(cost(rate, a, b + d) >= cost(rate, a, b) || b + d < a);
            prop_assert_eq!(cost(rate, a, b), -cost(rate, b, a));
        }

        /// Month totals sum to the whole-span costs; window totals over a partition of time too.
        #[test]
        fn month_and_window_totals_are_exact(
            spans in proptest::collection::vec((0i64..10_000, 1_600_000_000_000i64..1_800_000_000_000, 0i64..120 * MS_PER_DAY), 0..8),
            cut in 1_600_000_000_000i64..1_800_000_000_000,
        ) {
            let spans: Vec<UsageSpan> = spans.into_iter()
                .map(|(r, s, l)| UsageSpan { rate_per_hour: r, start: s, end: s + l })
                .collect();
            let whole: i64 = spans.iter().map(|s| cost(s.rate_per_hour, s.start, s.end)).sum();
            prop_assert_eq!(monthly_totals(&spans).values().sum::<i64>(), whole);
            let lo = 0;
            let hi = 2_000_000_000_000;
            prop_assert_eq!(period_total(&spans, lo, cut) + period_total(&spans, cut, hi), whole);
        }

        /// The rule's rate grows with memory and CPUs.
        #[test]
        fn rule_is_monotone(steps in 1u32..8, cpus_idx in 0usize..4) {
            let p = Pricing::embedded().unwrap();
            let cpus = [1u32, 2, 4, 8][cpus_idx];
            let cpu = CpuType { kind: CpuKind::Shared, cpus };
            let m1 = 256 * cpus * steps;
            let m2 = m1 + 256;
            if p.validate(cpu, m2).is_ok() && p.validate(cpu, m1).is_ok() {
                let (a, b) = (p.rate(cpu, m1).unwrap(), p.rate(cpu, m2).unwrap());
                if a.source == RateSource::Rule && b.source == RateSource::Rule {
                    prop_assert!(b.centicents_per_hour >= a.centicents_per_hour);
                }
            }
        }
    }
}
