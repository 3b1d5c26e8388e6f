//! Per-device rate limiting: a token bucket shared by all of a device's connections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rapport_wire::DeviceId;

/// Token buckets, one per device.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<DeviceId, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second on average, up to `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `device`; false when its bucket is empty.
    pub fn allow(&self, device: DeviceId) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(device).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_and_refills() {
        let limiter = RateLimiter::new(1_000.0, 5.0);
        let device = DeviceId([1; 16]);
        assert!((0..5).all(|_| limiter.allow(device)));
        assert!(!limiter.allow(device), "the burst is spent");
        assert!(limiter.allow(DeviceId([2; 16])), "buckets are per device");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(limiter.allow(device), "tokens come back over time");
    }
}
