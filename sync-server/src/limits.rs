//! Per-device rate limiting: a token bucket shared by all of a device's connections. A
//! full bucket is the same as none (a new one starts full), so the map forgets full ones
//! whenever it grows past its bound: devices that come and go cannot grow it without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rapport_wire::DeviceId;

/// Buckets kept before the full ones are forgotten.
const TRACKED: usize = 8_192;

/// Token buckets, one per device.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tracked: usize,
    buckets: Mutex<HashMap<DeviceId, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second on average, up to `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self::bounded(rate, burst, TRACKED)
    }

    /// [`RateLimiter::new`], forgetting full buckets beyond `tracked` devices.
    pub fn bounded(rate: f64, burst: f64, tracked: usize) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            tracked: tracked.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Devices with a bucket that is not full.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }

    /// Takes one token for `device`; false when its bucket is empty.
    pub fn allow(&self, device: DeviceId) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.tracked && !buckets.contains_key(&device) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
        }
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

/// Connections (and handshakes) per IP address: one address cannot take every slot.
pub struct PerAddress {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count, given back when dropped.
pub struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// At most `max` at once from one address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerAddress {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, unless it already has `max`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }

    /// Addresses holding at least one slot.
    pub fn addresses(&self) -> usize {
        self.counts.lock().map_or(0, |c| c.len())
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
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

    #[test]
    fn full_buckets_are_forgotten_and_busy_ones_kept() {
        let limiter = RateLimiter::bounded(1_000.0, 5.0, 10);
        let busy = DeviceId([0xbb; 16]);
        for _ in 0..5 {
            assert!(limiter.allow(busy));
        }
        // A thousand devices ten at a time, each group's buckets full again (1 ms) before
        // the next arrives.
        for i in 0..1_000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            limiter.allow(DeviceId(id));
            if i % 10 == 9 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        assert!(limiter.tracked() <= 11, "{} buckets", limiter.tracked());
        // A device that spent its burst keeps its empty bucket while it is not full.
        let slow = RateLimiter::bounded(0.001, 2.0, 2);
        let spender = DeviceId([0xcc; 16]);
        assert!(slow.allow(spender) && slow.allow(spender));
        for i in 0..50u8 {
            slow.allow(DeviceId([i; 16]));
        }
        assert!(
            !slow.allow(spender),
            "forgetting must not refill a spent bucket"
        );
    }

    #[test]
    fn an_address_gets_its_share_and_gives_it_back() {
        let table = PerAddress::new(2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let first = table.admit(a).unwrap();
        let _second = table.admit(a).unwrap();
        assert!(
            table.admit(a).is_none(),
            "a third from one address is refused"
        );
        assert!(table.admit(b).is_some(), "another address is not");
        drop(first);
        assert!(
            table.admit(a).is_some(),
            "a closed connection gives its slot back"
        );
        drop(_second);
        assert_eq!(
            table.addresses(),
            0,
            "the table forgets addresses with none"
        );
    }
}
