//! Limits on input, checked before anything is stored: keys, values, TTLs.
//! One function per field serves the client API and the peer protocol alike.
//!
//! Owns: the limits and the typed errors that name them.
//! Does not own: message-size limits (enforced by tonic from MAX_RECV_MSG_SIZE)
//! or mapping errors to gRPC statuses (`server::status`).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    pub max_key_size: usize,
    pub max_value_size: usize,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("key must not be empty")]
    EmptyKey,
    #[error("key is {size} bytes, larger than MAX_KEY_SIZE ({limit} bytes); use a shorter key")]
    KeyTooLong { size: usize, limit: usize },
    #[error("value is {size} bytes, larger than MAX_VALUE_SIZE ({limit} bytes); store a smaller value")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("ttl_seconds is {ttl_seconds}, larger than MAX_TTL ({limit} seconds)")]
    TtlTooLong { ttl_seconds: u64, limit: u64 },
    #[error("{field} is missing")]
    Missing { field: &'static str },
}

impl InputLimits {
    pub fn check_key(&self, key: &[u8]) -> Result<(), InputError> {
        if key.is_empty() {
            return Err(InputError::EmptyKey);
        }
        if key.len() > self.max_key_size {
            return Err(InputError::KeyTooLong {
                size: key.len(),
                limit: self.max_key_size,
            });
        }
        Ok(())
    }

    pub fn check_value(&self, value: &[u8]) -> Result<(), InputError> {
        if value.len() > self.max_value_size {
            return Err(InputError::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_size,
            });
        }
        Ok(())
    }

    /// The TTL to apply: the request's, or the default when absent or 0.
    pub fn ttl(&self, requested_seconds: Option<u32>) -> Result<Duration, InputError> {
        match requested_seconds {
            None | Some(0) => Ok(self.default_ttl),
            Some(seconds) if u64::from(seconds) > self.max_ttl.as_secs() => Err(InputError::TtlTooLong {
                ttl_seconds: seconds.into(),
                limit: self.max_ttl.as_secs(),
            }),
            Some(seconds) => Ok(Duration::from_secs(seconds.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: InputLimits = InputLimits {
        max_key_size: 4,
        max_value_size: 8,
        default_ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(100),
    };

    #[test]
    fn keys_must_be_non_empty_and_within_the_limit() {
        assert_eq!(LIMITS.check_key(b""), Err(InputError::EmptyKey));
        assert_eq!(LIMITS.check_key(b"abcd"), Ok(()));
        let error = LIMITS.check_key(b"abcde").unwrap_err();
        assert_eq!(error, InputError::KeyTooLong { size: 5, limit: 4 });
        assert!(error.to_string().contains("MAX_KEY_SIZE (4 bytes)"));
    }

    #[test]
    fn values_may_be_empty_but_not_oversized() {
        assert_eq!(LIMITS.check_value(b""), Ok(()));
        assert_eq!(LIMITS.check_value(&[0; 8]), Ok(()));
        assert!(
            LIMITS
                .check_value(&[0; 9])
                .unwrap_err()
                .to_string()
                .contains("MAX_VALUE_SIZE (8 bytes)")
        );
    }

    #[test]
    fn ttl_defaults_when_absent_or_zero_and_is_capped() {
        assert_eq!(LIMITS.ttl(None), Ok(Duration::from_secs(60)));
        assert_eq!(LIMITS.ttl(Some(0)), Ok(Duration::from_secs(60)));
        assert_eq!(LIMITS.ttl(Some(100)), Ok(Duration::from_secs(100)));
        assert!(
            LIMITS
                .ttl(Some(101))
                .unwrap_err()
                .to_string()
                .contains("MAX_TTL (100 seconds)")
        );
    }
}
