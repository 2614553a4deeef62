//! Closed Cases per week as an SVG bar chart, rendered on the server from numbers only.

use chrono::NaiveDate;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 180;
const BOTTOM: u32 = 24;
const TOP: u32 = 16;

/// The chart's SVG. Every value in it is a number or a date the code formatted, so it needs no
/// escaping; the `<title>`s give each bar its accessible text.
pub fn weekly(weeks: &[(NaiveDate, u64)]) -> String {
    let max = weeks.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let n = weeks.len().max(1) as u32;
    let slot = WIDTH / n;
    let bar = slot.saturating_sub(6).max(2);
    let plot = HEIGHT - BOTTOM - TOP;
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"chart-title\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"100%\" height=\"{HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"chart-title\">Closed Cases per week, the last {n} weeks</title>"
    );
    for (i, (week, count)) in weeks.iter().enumerate() {
        let h = (u64::from(plot) * count / max) as u32;
        let x = i as u32 * slot + 3;
        let y = TOP + plot - h;
        out.push_str(&format!(
            "<g><title>Week of {week}: {count} closed Cases</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\"></rect>\
             <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"middle\">{count}</text>\
             <text x=\"{tx}\" y=\"{ly}\" text-anchor=\"middle\">{label}</text></g>",
            tx = x + bar / 2,
            ty = y.saturating_sub(3).max(10),
            ly = HEIGHT - 6,
            label = week.format("%b %d"),
        ));
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_week() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let svg = weekly(&[
            (d("2024-03-04"), 2),
            (d("2024-03-11"), 4),
            (d("2024-03-18"), 0),
        ]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Week of 2024-03-11: 4 closed Cases"));
        assert_eq!(svg.matches("<rect").count(), 3);
        // the tallest bar fills the plot; an empty week has no height
        assert!(svg.contains(&format!("height=\"{}\"", HEIGHT - BOTTOM - TOP)));
        assert!(svg.contains("height=\"0\""));
    }
}
