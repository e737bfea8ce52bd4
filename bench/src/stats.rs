//! Small statistics helpers.

/// Nearest-rank percentile of `values` (sorted here); None when empty.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// p50, p90, p99 and max, in the unit of `values`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Distribution {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    pub fn of(mut values: Vec<f64>) -> Distribution {
        let count = values.len();
        Distribution {
            count,
            p50: percentile(&mut values, 50.0).unwrap_or(f64::NAN),
            p90: percentile(&mut values, 90.0).unwrap_or(f64::NAN),
            p99: percentile(&mut values, 99.0).unwrap_or(f64::NAN),
            max: percentile(&mut values, 100.0).unwrap_or(f64::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}
