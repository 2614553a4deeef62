//! `Sforce-Limit-Info: api-usage=10018/100000; per-app-api-usage=17/250(appName=x)`.

use serde::{Deserialize, Serialize};

/// The org's API usage over the rolling 24 hours, as the last response reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    pub used: u64,
    pub allotment: u64,
}

impl ApiUsage {
    /// Parses the `api-usage=used/allotment` item wherever it stands in the header; other items
    /// (`per-app-api-usage`, `api-bursts`) are ignored rather than making the parse fail.
    pub fn parse(header: &str) -> Option<Self> {
        header.split(';').find_map(|item| {
            let (key, value) = item.trim().split_once('=')?;
            if key.trim() != "api-usage" {
                return None;
            }
            let (used, allotment) = value.trim().split_once('/')?;
            let used = used.trim().parse().ok()?;
            let allotment: u64 = allotment.trim().parse().ok()?;
            (allotment > 0).then_some(Self { used, allotment })
        })
    }

    pub fn share(&self) -> f64 {
        self.used as f64 / self.allotment as f64
    }
}

impl std::fmt::Display for ApiUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} API requests in the last 24 h ({:.1} %)",
            self.used,
            self.allotment,
            self.share() * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_shape() {
        let u = |used, allotment| Some(ApiUsage { used, allotment });
        assert_eq!(ApiUsage::parse("api-usage=10018/100000"), u(10018, 100000));
        assert_eq!(
            ApiUsage::parse(
                "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)"
            ),
            u(25, 5000)
        );
        assert_eq!(
            ApiUsage::parse("api-usage=10018/100000; api-bursts=1/750"),
            u(10018, 100000)
        );
        assert_eq!(
            ApiUsage::parse("per-app-api-usage=17/250(appName=x); api-usage=3/9"),
            u(3, 9)
        );
        assert_eq!(ApiUsage::parse("api-usage=1/0"), None);
        assert_eq!(ApiUsage::parse("garbage"), None);
        assert_eq!(ApiUsage::parse("per-app-api-usage=17/250(appName=x)"), None);
    }
}
