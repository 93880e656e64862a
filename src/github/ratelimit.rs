//! Rate-limit bookkeeping and retry policy: a pure core, `now` passed in.
//!
//! Follows GitHub's "Rate limits for the REST API" and "Best practices for using the REST API"
//! (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>,
//! <https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>):
//!
//! * every response carries `X-RateLimit-Limit/Remaining/Used/Reset/Resource`; [`RateLimitInfo`]
//!   reads them and [`RateLimiter`] keeps the latest per resource (`core`, `search`, ...);
//! * **pacing**: once `remaining` falls under [`RetryPolicy::pacing_threshold`] of `limit`, requests
//!   are spread evenly over the time left until `reset` (`delay = time_to_reset / remaining`); with
//!   nothing left the delay is the time to `reset`;
//! * **secondary limits**: a `403`/`429` with `Retry-After` waits that many seconds; a `403`/`429`
//!   with `X-RateLimit-Remaining: 0` waits until `X-RateLimit-Reset`; any other rate-limit `403`/`429`
//!   waits with exponential backoff from [`RetryPolicy::secondary_base`] (60 s per GitHub's docs);
//! * a `5xx` on an idempotent method is retried with jittered exponential backoff, at most
//!   [`RetryPolicy::server_error_retries`] times; other `4xx` are never retried.
//!
//! Times are unix milliseconds ([`Millis`]); waits are [`Duration`]s. Nothing here sleeps or reads a
//! clock: the client asks, then sleeps.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Millis;

/// The rate-limit headers of one response, as GitHub sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitInfo {
    /// `X-RateLimit-Limit`: requests allowed per window.
    pub limit: u64,
    /// `X-RateLimit-Remaining`: requests left in the window.
    pub remaining: u64,
    /// `X-RateLimit-Used`: requests made in the window (derived from limit - remaining if absent).
    pub used: u64,
    /// `X-RateLimit-Reset`: window end, unix **seconds**.
    pub reset_epoch_s: i64,
    /// `X-RateLimit-Resource`: the bucket (`core`, `search`, `graphql`, ...); `core` if absent.
    pub resource: String,
}

/// The header names read, lower case.
pub mod headers {
    /// `x-ratelimit-limit`
    pub const LIMIT: &str = "x-ratelimit-limit";
    /// `x-ratelimit-remaining`
    pub const REMAINING: &str = "x-ratelimit-remaining";
    /// `x-ratelimit-used`
    pub const USED: &str = "x-ratelimit-used";
    /// `x-ratelimit-reset`
    pub const RESET: &str = "x-ratelimit-reset";
    /// `x-ratelimit-resource`
    pub const RESOURCE: &str = "x-ratelimit-resource";
    /// `retry-after` (seconds)
    pub const RETRY_AFTER: &str = "retry-after";
}

fn num<T: std::str::FromStr>(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<T> {
    get(name)?.trim().parse().ok()
}

impl RateLimitInfo {
    /// Read the headers through `get` (a case-insensitive lookup returning the header's value).
    /// `None` unless at least `Limit`, `Remaining` and `Reset` are present and numeric.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let limit: u64 = num(&get, headers::LIMIT)?;
        let remaining: u64 = num(&get, headers::REMAINING)?;
        let reset_epoch_s: i64 = num(&get, headers::RESET)?;
        let used = num(&get, headers::USED).unwrap_or(limit.saturating_sub(remaining));
        let resource = get(headers::RESOURCE)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "core".to_string());
        Some(Self {
            limit,
            remaining,
            used,
            reset_epoch_s,
            resource,
        })
    }

    /// Read from an [`http::HeaderMap`].
    pub fn from_headers(map: &http::HeaderMap) -> Option<Self> {
        Self::from_lookup(|n| header_str(map, n))
    }

    /// Milliseconds until the window resets (0 if already past).
    pub fn ms_to_reset(&self, now: Millis) -> Millis {
        (self.reset_epoch_s.saturating_mul(1000) - now).max(0)
    }
}

/// A header's value as a string, if present and ASCII.
pub fn header_str(map: &http::HeaderMap, name: &str) -> Option<String> {
    map.get(name)?.to_str().ok().map(str::to_string)
}

/// What a `403`/`429` response said about retrying, extracted from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetrySignals {
    /// `Retry-After`, seconds.
    pub retry_after_s: Option<u64>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset`, unix seconds.
    pub reset_epoch_s: Option<i64>,
    /// Whether the error body's `message` speaks of a rate limit (GitHub's secondary-limit
    /// messages say "rate limit" or "abuse detection").
    pub message_says_rate_limit: bool,
}

impl RetrySignals {
    /// Extract from headers and the (possibly empty) error message.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        Self {
            retry_after_s: num(&get, headers::RETRY_AFTER),
            remaining: num(&get, headers::REMAINING),
            reset_epoch_s: num(&get, headers::RESET),
            message_says_rate_limit: m.contains("rate limit") || m.contains("abuse"),
        }
    }

    /// True if a 403 is a rate limit rather than a permission error.
    pub fn is_rate_limit(&self) -> bool {
        self.retry_after_s.is_some() || self.remaining == Some(0) || self.message_says_rate_limit
    }
}

/// Tunables of the policy. [`RetryPolicy::default`] follows GitHub's documented values.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Start pacing when `remaining < pacing_threshold * limit` (0.0..=1.0; default 0.1).
    pub pacing_threshold: f64,
    /// First backoff for a secondary limit without `Retry-After`/reset (default 60 s, per the
    /// docs); doubles per attempt.
    pub secondary_base: Duration,
    /// How many times a rate-limited request is retried (default 3).
    pub rate_limit_retries: u32,
    /// First backoff for a `5xx` (default 1 s); doubles per attempt, jittered to 50..100 %.
    pub server_error_base: Duration,
    /// How many times a `5xx` on an idempotent method is retried (default 3).
    pub server_error_retries: u32,
    /// The longest the client sleeps in one go; a longer required wait is reported as
    /// [`crate::github::GithubError::RateLimited`] so the caller can reschedule (default 15 min).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            pacing_threshold: 0.1,
            secondary_base: Duration::from_secs(60),
            rate_limit_retries: 3,
            server_error_base: Duration::from_secs(1),
            server_error_retries: 3,
            max_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a retry happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// `Retry-After` header.
    RetryAfter,
    /// Primary limit exhausted (`remaining: 0`): wait for the reset.
    PrimaryExhausted,
    /// Secondary limit without guidance: exponential backoff.
    SecondaryBackoff,
    /// Server error.
    ServerError,
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the response to the caller (success or a non-retryable error).
    Done,
    /// Wait, then send again.
    Retry {
        /// How long to wait first.
        after: Duration,
        /// Why.
        reason: RetryReason,
    },
    /// Rate limited and out of retries (or the wait exceeds `max_wait`): give up for now; the
    /// limit lifts after `after`.
    GiveUp {
        /// When the caller may try again, from now.
        after: Duration,
        /// Why.
        reason: RetryReason,
    },
}

fn pow2(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
}

impl RetryPolicy {
    /// Decide about a response. `attempt` counts retries already made for this request (0 on
    /// the first response); `idempotent` is false for `POST` (a `5xx` there may have taken effect);
    /// `jitter` is a random number in `0.0..1.0`.
    pub fn verdict(
        &self,
        status: u16,
        signals: &RetrySignals,
        attempt: u32,
        idempotent: bool,
        now: Millis,
        jitter: f64,
    ) -> Verdict {
        let rate_limited = status == 429 || (status == 403 && signals.is_rate_limit());
        if rate_limited {
            let (after, reason) = if let Some(s) = signals.retry_after_s {
                (Duration::from_secs(s), RetryReason::RetryAfter)
            } else if let (Some(0), Some(reset)) = (signals.remaining, signals.reset_epoch_s) {
                let ms = (reset.saturating_mul(1000) - now).max(0) as u64;
                (Duration::from_millis(ms), RetryReason::PrimaryExhausted)
            } else {
                (
                    pow2(self.secondary_base, attempt),
                    RetryReason::SecondaryBackoff,
                )
            };
            if attempt >= self.rate_limit_retries || after > self.max_wait {
                return Verdict::GiveUp { after, reason };
            }
            return Verdict::Retry { after, reason };
        }
        if (500..600).contains(&status) && idempotent && attempt < self.server_error_retries {
            let full = pow2(self.server_error_base, attempt);
            let j = jitter.clamp(0.0, 1.0);
            return Verdict::Retry {
                after: full.mul_f64(0.5 + 0.5 * j),
                reason: RetryReason::ServerError,
            };
        }
        Verdict::Done
    }

    /// The delay before the next request given the latest known state of its resource:
    /// zero while `remaining >= pacing_threshold * limit`; else `time_to_reset / remaining`;
    /// with nothing remaining, the time to reset. Zero once the reset time has passed.
    pub fn pacing_delay(&self, info: &RateLimitInfo, now: Millis) -> Duration {
        let to_reset = info.ms_to_reset(now);
        if to_reset == 0 || info.limit == 0 {
            return Duration::ZERO;
        }
        let threshold = (info.limit as f64 * self.pacing_threshold).ceil() as u64;
        if info.remaining >= threshold {
            return Duration::ZERO;
        }
        if info.remaining == 0 {
            return Duration::from_millis(to_reset as u64);
        }
        Duration::from_millis(to_reset as u64 / info.remaining)
    }
}

/// The latest known rate-limit state per resource, plus any "do not send before" instant set by
/// a secondary limit.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    by_resource: HashMap<String, RateLimitInfo>,
    blocked_until: Option<Millis>,
}

impl RateLimiter {
    /// Record the headers of a response. A response without headers that cost a request
    /// (`counted`, i.e. not a `304`) lowers the known `remaining` of `core` by one; a `304` changes
    /// nothing (conditional requests answered `304` do not count, per GitHub's docs).
    pub fn observe(&mut self, info: Option<RateLimitInfo>, counted: bool) {
        match info {
            Some(i) => {
                self.by_resource.insert(i.resource.clone(), i);
            }
            None if counted => {
                if let Some(c) = self.by_resource.get_mut("core") {
                    c.remaining = c.remaining.saturating_sub(1);
                    c.used = c.used.saturating_add(1);
                }
            }
            None => {}
        }
    }

    /// The latest state of `resource`, if any response reported it.
    pub fn get(&self, resource: &str) -> Option<&RateLimitInfo> {
        self.by_resource.get(resource)
    }

    /// Refuse requests until `until` (unix ms); keeps the later of two blocks.
    pub fn block_until(&mut self, until: Millis) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Lift a block set until `until`, unless a later block was set since (the caller waited
    /// it out itself).
    pub fn release(&mut self, until: Millis) {
        if self.blocked_until.is_some_and(|b| b <= until) {
            self.blocked_until = None;
        }
    }

    /// When requests may be sent again, if a block is in force at `now`.
    pub fn blocked_until(&self, now: Millis) -> Option<Millis> {
        self.blocked_until.filter(|&b| b > now)
    }

    /// How long to wait before the next request to `resource` (`core` for REST): the secondary
    /// block if any, else the pacing delay.
    pub fn delay_before(&self, policy: &RetryPolicy, resource: &str, now: Millis) -> Duration {
        let block = self
            .blocked_until(now)
            .map(|b| Duration::from_millis((b - now) as u64))
            .unwrap_or_default();
        let pace = self
            .get(resource)
            .map(|i| policy.pacing_delay(i, now))
            .unwrap_or_default();
        block.max(pace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(limit: u64, remaining: u64, reset_s: i64) -> RateLimitInfo {
        RateLimitInfo {
            limit,
            remaining,
            used: limit - remaining,
            reset_epoch_s: reset_s,
            resource: "core".into(),
        }
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        move |n: &str| {
            v.iter()
                .find(|(k, _)| k == &n.to_ascii_lowercase())
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn parses_headers_and_defaults_resource() {
        let i = RateLimitInfo::from_lookup(lookup(&[
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "4996"),
            ("X-RateLimit-Reset", "1678903315"),
            ("X-RateLimit-Used", "4"),
            ("X-RateLimit-Resource", "core"),
        ]))
        .unwrap();
        assert_eq!(i, info(5000, 4996, 1_678_903_315));
        let j = RateLimitInfo::from_lookup(lookup(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "100"),
        ]))
        .unwrap();
        assert_eq!(j.resource, "core");
        assert_eq!(j.used, 60);
        assert!(RateLimitInfo::from_lookup(lookup(&[("x-ratelimit-limit", "60")])).is_none());
        assert!(
            RateLimitInfo::from_lookup(lookup(&[
                ("x-ratelimit-limit", "x"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "100"),
            ]))
            .is_none()
        );
    }

    #[test]
    fn no_pacing_above_threshold() {
        let p = RetryPolicy::default();
        assert_eq!(p.pacing_delay(&info(5000, 500, 1000), 0), Duration::ZERO);
        assert_eq!(p.pacing_delay(&info(5000, 4999, 1000), 0), Duration::ZERO);
    }

    #[test]
    fn pacing_spreads_remaining_budget_until_reset() {
        let p = RetryPolicy::default();
        // 100 left of 5000 (< 10 %), 1000 s to reset: one request per 10 s.
        assert_eq!(
            p.pacing_delay(&info(5000, 100, 1000), 0),
            Duration::from_secs(10)
        );
        // Half-way through the window: 500 s / 100.
        assert_eq!(
            p.pacing_delay(&info(5000, 100, 1000), 500_000),
            Duration::from_secs(5)
        );
        // Nothing left: wait for the reset.
        assert_eq!(
            p.pacing_delay(&info(5000, 0, 1000), 400_000),
            Duration::from_secs(600)
        );
        // Reset passed: no delay.
        assert_eq!(
            p.pacing_delay(&info(5000, 0, 1000), 1_000_001),
            Duration::ZERO
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let p = RetryPolicy::default();
        let s = RetrySignals::from_lookup(lookup(&[("Retry-After", "60")]), "abuse detection");
        assert_eq!(
            p.verdict(403, &s, 0, true, 0, 0.5),
            Verdict::Retry {
                after: Duration::from_secs(60),
                reason: RetryReason::RetryAfter
            }
        );
        assert_eq!(
            p.verdict(429, &s, 0, false, 0, 0.5),
            Verdict::Retry {
                after: Duration::from_secs(60),
                reason: RetryReason::RetryAfter
            }
        );
    }

    #[test]
    fn remaining_zero_waits_until_reset() {
        let p = RetryPolicy::default();
        let s = RetrySignals::from_lookup(
            lookup(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "130")]),
            "",
        );
        assert_eq!(
            p.verdict(403, &s, 0, true, 100_000, 0.0),
            Verdict::Retry {
                after: Duration::from_secs(30),
                reason: RetryReason::PrimaryExhausted
            }
        );
    }

    #[test]
    fn secondary_without_guidance_backs_off_exponentially_from_60s() {
        let p = RetryPolicy::default();
        let s = RetrySignals::from_lookup(lookup(&[]), "You have exceeded a secondary rate limit");
        for (attempt, secs) in [(0, 60), (1, 120), (2, 240)] {
            assert_eq!(
                p.verdict(403, &s, attempt, true, 0, 0.3),
                Verdict::Retry {
                    after: Duration::from_secs(secs),
                    reason: RetryReason::SecondaryBackoff
                }
            );
        }
        assert!(matches!(
            p.verdict(403, &s, 3, true, 0, 0.3),
            Verdict::GiveUp { .. }
        ));
        // Remaining 0 without a reset header also backs off.
        let s = RetrySignals::from_lookup(lookup(&[("x-ratelimit-remaining", "0")]), "");
        assert!(matches!(
            p.verdict(403, &s, 0, true, 0, 0.3),
            Verdict::Retry {
                reason: RetryReason::SecondaryBackoff,
                ..
            }
        ));
    }

    #[test]
    fn waits_longer_than_max_give_up() {
        let p = RetryPolicy {
            max_wait: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let s = RetrySignals::from_lookup(lookup(&[("retry-after", "60")]), "");
        assert_eq!(
            p.verdict(403, &s, 0, true, 0, 0.0),
            Verdict::GiveUp {
                after: Duration::from_secs(60),
                reason: RetryReason::RetryAfter
            }
        );
    }

    #[test]
    fn permission_403_and_other_4xx_are_not_retried() {
        let p = RetryPolicy::default();
        let s = RetrySignals::from_lookup(
            lookup(&[("x-ratelimit-remaining", "4000")]),
            "Must have admin rights to Repository.",
        );
        assert_eq!(p.verdict(403, &s, 0, true, 0, 0.0), Verdict::Done);
        for st in [400, 401, 404, 409, 422] {
            assert_eq!(
                p.verdict(st, &RetrySignals::default(), 0, true, 0, 0.0),
                Verdict::Done
            );
        }
        assert_eq!(
            p.verdict(200, &RetrySignals::default(), 0, true, 0, 0.0),
            Verdict::Done
        );
    }

    #[test]
    fn server_errors_retry_with_jittered_backoff_bounded() {
        let p = RetryPolicy::default();
        let none = RetrySignals::default();
        assert_eq!(
            p.verdict(502, &none, 0, true, 0, 0.0),
            Verdict::Retry {
                after: Duration::from_millis(500),
                reason: RetryReason::ServerError
            }
        );
        assert_eq!(
            p.verdict(500, &none, 2, true, 0, 1.0),
            Verdict::Retry {
                after: Duration::from_secs(4),
                reason: RetryReason::ServerError
            }
        );
        assert_eq!(p.verdict(500, &none, 3, true, 0, 0.5), Verdict::Done);
        // POST is not retried on 5xx: it may have taken effect.
        assert_eq!(p.verdict(500, &none, 0, false, 0, 0.5), Verdict::Done);
    }

    #[test]
    fn limiter_blocks_and_paces() {
        let p = RetryPolicy::default();
        let mut l = RateLimiter::default();
        assert_eq!(l.delay_before(&p, "core", 0), Duration::ZERO);
        l.observe(Some(info(5000, 10, 100)), true);
        assert_eq!(l.delay_before(&p, "core", 0), Duration::from_secs(10));
        l.block_until(50_000);
        l.block_until(20_000);
        assert_eq!(l.blocked_until(0), Some(50_000));
        assert_eq!(l.delay_before(&p, "core", 0), Duration::from_secs(50));
        assert_eq!(l.blocked_until(50_000), None);
    }

    #[test]
    fn not_modified_does_not_decrement() {
        let mut l = RateLimiter::default();
        l.observe(Some(info(5000, 4921, 100)), true);
        l.observe(None, false);
        assert_eq!(l.get("core").unwrap().remaining, 4921);
        l.observe(None, true);
        assert_eq!(l.get("core").unwrap().remaining, 4920);
    }
}
