//! The checks a loaded configuration must pass before anything starts: each refusal
//! names the option and what it must be.

use super::Config;

impl Config {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("http_header_timeout_ms", self.http_header_timeout_ms),
            ("http_body_timeout_ms", self.http_body_timeout_ms),
            ("http_idle_timeout_ms", self.http_idle_timeout_ms),
            ("cache_ttl_ms", self.cache_ttl_ms),
            ("cache_coherence_ms", self.cache_coherence_ms),
            (
                "database_max_connections",
                u64::from(self.database_max_connections),
            ),
            ("usage_flush_interval_ms", self.usage_flush_interval_ms),
            ("idempotency_ttl_hours", self.idempotency_ttl_hours),
            ("redis_timeout_ms", self.redis_timeout_ms),
            ("cluster_nodes", self.cluster_nodes.map_or(1, u64::from)),
            (
                "usage_minute_retention_hours",
                self.usage_minute_retention_hours,
            ),
            ("usage_hour_retention_days", self.usage_hour_retention_days),
            ("usage_day_retention_days", self.usage_day_retention_days),
            (
                "alert_spike_min_per_minute",
                self.alert_spike_min_per_minute,
            ),
            ("alert_failed_per_minute", self.alert_failed_per_minute),
            ("alert_baseline_minutes", self.alert_baseline_minutes),
            ("alert_quiet_minutes", self.alert_quiet_minutes),
            ("webhook_timeout_ms", self.webhook_timeout_ms),
            ("webhook_retry_initial_ms", self.webhook_retry_initial_ms),
            (
                "webhook_retry_max_delay_ms",
                self.webhook_retry_max_delay_ms,
            ),
            (
                "webhook_retry_period_hours",
                self.webhook_retry_period_hours,
            ),
            ("webhook_concurrency", u64::from(self.webhook_concurrency)),
            ("session_idle_minutes", self.session_idle_minutes),
            ("session_max_hours", self.session_max_hours),
            ("portal_session_minutes", self.portal_session_minutes),
            (
                "login_failures_per_email",
                u64::from(self.login_failures_per_email),
            ),
            (
                "login_failures_per_ip",
                u64::from(self.login_failures_per_ip),
            ),
            (
                "login_failure_window_minutes",
                self.login_failure_window_minutes,
            ),
        ];
        // Session lifetimes are added to timestamps: keep them far from overflow.
        for (name, value, max) in [
            (
                "session_idle_minutes",
                self.session_idle_minutes,
                60 * 24 * 366,
            ),
            ("session_max_hours", self.session_max_hours, 24 * 366),
            (
                "portal_session_minutes",
                self.portal_session_minutes,
                60 * 24 * 366,
            ),
            (
                "login_failure_window_minutes",
                self.login_failure_window_minutes,
                60 * 24 * 366,
            ),
        ] {
            if value > max {
                return Err(format!("{name} must be at most {max} (a year)"));
            }
        }
        if let Some(url) = &self.public_url {
            let lower = url.to_ascii_lowercase();
            let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            if !scheme_ok
                || rest.is_empty()
                || url
                    .chars()
                    .any(|c| c.is_whitespace() || c == '?' || c == '#')
            {
                return Err("public_url must be an http:// or https:// address such as \
                     https://keys.example.com (no query or fragment)"
                    .to_owned());
            }
        }
        // Timers are set this far ahead: keep them far from overflow.
        if self.cache_coherence_ms > 86_400_000 {
            return Err("cache_coherence_ms must be at most 86400000 (a day)".to_owned());
        }
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be greater than 0"));
        }
        if self.http_body_timeout_ms >= self.request_timeout_ms {
            return Err(
                "http_body_timeout_ms must be less than request_timeout_ms (a stalled \
                 body would otherwise be answered 503 timeout, not 408)"
                    .to_owned(),
            );
        }
        // One second to a hundred years, as a keyspace's maximum key age.
        if self
            .root_key_max_age_seconds
            .is_some_and(|age| age == 0 || age > 100 * 366 * 24 * 3600)
        {
            return Err(
                "root_key_max_age_seconds must be between 1 and 3162240000 (100 years)".to_owned(),
            );
        }
        if self.alert_spike_factor < 2 {
            return Err("alert_spike_factor must be at least 2".to_owned());
        }
        if self.alert_baseline_minutes > 1440
            || self.alert_baseline_minutes > self.usage_minute_retention_hours * 60
        {
            return Err("alert_baseline_minutes must be at most 1440 and within \
                 usage_minute_retention_hours"
                .to_owned());
        }
        if self.webhook_retry_initial_ms > self.webhook_retry_max_delay_ms {
            return Err(
                "webhook_retry_initial_ms must not exceed webhook_retry_max_delay_ms".to_owned(),
            );
        }
        if let Some(url) = &self.leaks_github_public_keys_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://"))
                || url.chars().any(char::is_whitespace)
            {
                return Err(
                    "leaks_github_public_keys_url must be an http:// or https:// \
                     address such as https://api.github.com/meta/public_keys/secret_scanning"
                        .to_owned(),
                );
            }
        }
        self.gateway.check("gateway")?;
        for (i, proxy) in self.proxy.iter().enumerate() {
            proxy.check(&format!("proxy[{i}]"))?;
            let taken = std::iter::once(self.listen)
                .chain(self.proxy.iter().take(i).map(|p| p.listen))
                .any(|a| a.port() != 0 && a == proxy.listen);
            if taken {
                return Err(format!(
                    "proxy[{i}].listen {} is already used by another listener",
                    proxy.listen
                ));
            }
        }
        if let Some(addr) = self.envoy_authz_listen {
            let taken = std::iter::once(self.listen)
                .chain(self.proxy.iter().map(|p| p.listen))
                .any(|a| a.port() != 0 && a == addr);
            if taken {
                return Err(format!(
                    "envoy_authz_listen {addr} is already used by another listener"
                ));
            }
        }
        Ok(())
    }
}
