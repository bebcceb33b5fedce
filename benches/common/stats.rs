//! The statistic the interleaved benches (`limits`, `sustained`, `queue_scaling`) report.

/// The median of `v` (sorted in place; NaN sorts last).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
