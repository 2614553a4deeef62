//! Deterministic English support content: hand-written topics for the sample org and large
//! text pools that generated email bodies are sliced from (so 100,000 Cases need no stored text).

use std::sync::OnceLock;

/// SplitMix64: tiny, fast and deterministic; good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng64(u64);

impl Rng64 {
    pub fn new(seed: u64) -> Rng64 {
        Rng64(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi` (returns `lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Mixes several numbers into one seed.
pub fn mix(parts: &[u64]) -> u64 {
    let mut r = Rng64::new(0x5EED);
    let mut acc = 0u64;
    for p in parts {
        r.0 ^= p.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        acc ^= r.next_u64();
    }
    acc
}

const SENTENCES: &[&str] = &[
    "Thanks for getting back to me so quickly.",
    "I have attached the screenshot you asked for.",
    "The printer on the third floor still shows the paper jam error after we cleared the tray.",
    "Our invoice for last month lists the premium plan twice, which looks like a billing mistake.",
    "I can no longer sign in; the page says my password has expired even after I reset it.",
    "Could you please confirm when the refund will reach our account?",
    "We restarted the router and the device as suggested, but nothing changed.",
    "The export finished, yet the file only contains the header row.",
    "Please let me know if you need the order number or any other details.",
    "I reproduced the problem on two different laptops and in two browsers.",
    "Your colleague mentioned that a fix would be deployed this week.",
    "We are a small team and this is blocking our month-end close.",
    "The error message reads \"Unable to connect to the licence server (code 0x80070005)\".",
    "I checked the spam folder and there is no confirmation email there either.",
    "Since the update on Tuesday the app crashes as soon as I open a report.",
    "We would like to downgrade to the standard plan starting next billing cycle.",
    "The delivery was marked as complete, but the package never arrived at our office.",
    "Two-factor codes arrive several minutes late, so they have already expired.",
    "I followed the knowledge article step by step and still get the same result.",
    "Could you escalate this to someone who can look at the account settings?",
    "Thank you for your patience while we looked into this.",
    "I have applied a credit of the duplicated amount to your account.",
    "Our engineers found the cause: a cached session was not cleared after the password change.",
    "Please clear the print queue, power-cycle the printer and send a test page.",
    "The refund has been processed and should appear within five to seven business days.",
    "I have reset the multi-factor enrolment; you will be asked to set it up again at next login.",
    "A replacement unit has been dispatched with tracking number 1Z 999 AA1 01 2345 6784.",
    "I am closing this case for now, but simply reply to this email if the issue comes back.",
    "We updated the firmware remotely, which resolves the recurring jam sensor fault.",
    "Could you try again and tell me whether the message still appears?",
    "The corrected invoice is attached and supersedes the previous one.",
    "For security reasons we cannot change the account owner without written confirmation.",
    "The outage affected customers in the EU region between 09:10 and 09:55 UTC.",
    "Your licence key has been re-issued and the old one deactivated.",
    "Let me know if there is anything else I can help with.",
    "I'm afraid the discount can't be applied retroactively, but I have passed your feedback on.",
];

const SIGNOFFS: &[&str] = &[
    "Kind regards,\nAcme Support",
    "Best,\nThe Acme Support Team",
    "Thanks,\nSupport",
    "Cheers",
    "Regards",
];

struct Pool {
    text: String,
    /// Byte offsets where a paragraph starts (the last one is `text.len()`).
    starts: Vec<usize>,
}

fn build_pool(html: bool) -> Pool {
    let mut rng = Rng64::new(if html { 0x4854_4D4C } else { 0x5445_5854 });
    let mut text = String::with_capacity(600 * 1024);
    let mut starts = Vec::new();
    while text.len() < 512 * 1024 {
        starts.push(text.len());
        let n = rng.range(2, 6);
        if html {
            text.push_str("<p>");
        }
        for i in 0..n {
            if i > 0 {
                text.push(' ');
            }
            let s = *rng.pick(SENTENCES);
            if html {
                let escaped = s
                    .replace('&', "&amp;")
                    .replace('"', "&quot;")
                    .replace('<', "&lt;");
                text.push_str(&escaped);
                if rng.chance(0.15) {
                    text.push_str("<br>");
                }
                if rng.chance(0.05) {
                    text.push_str(
                        " See <a href=\"https://support.example.com/kb/articles/1042\">this article</a> &amp; the FAQ.",
                    );
                }
            } else {
                text.push_str(s);
            }
        }
        if html {
            text.push_str("</p>\n");
        } else {
            text.push_str("\n\n");
        }
        if rng.chance(0.1) {
            let so = *rng.pick(SIGNOFFS);
            if html {
                text.push_str("<p>");
                text.push_str(&so.replace('\n', "<br>"));
                text.push_str("</p>\n");
            } else {
                text.push_str(so);
                text.push_str("\n\n");
            }
        }
    }
    starts.push(text.len());
    Pool { text, starts }
}

fn pool(html: bool) -> &'static Pool {
    static PLAIN: OnceLock<Pool> = OnceLock::new();
    static HTML: OnceLock<Pool> = OnceLock::new();
    if html {
        HTML.get_or_init(|| build_pool(true))
    } else {
        PLAIN.get_or_init(|| build_pool(false))
    }
}

/// A deterministic body of at least `len` bytes (whole paragraphs, so HTML stays well formed),
/// borrowed from a shared pool: no allocation per call.
pub fn pooled_body(seed: u64, len: u32, html: bool) -> &'static str {
    let p = pool(html);
    let len = (len as usize).min(64 * 1024);
    let max_start = p.text.len().saturating_sub(len + 8 * 1024);
    let candidates = p.starts.partition_point(|&s| s <= max_start).max(1);
    let start = p.starts[(seed % candidates as u64) as usize];
    let end_idx = p.starts.partition_point(|&s| s < start + len.max(1));
    let end = p.starts.get(end_idx).copied().unwrap_or(p.text.len());
    p.text[start..end].trim_end()
}

/// One hand-written support topic of the sample org.
pub struct Topic {
    pub subject: &'static str,
    pub case_type: Option<&'static str>,
    pub queue: usize,
    pub customer: &'static [&'static str],
    pub agent: &'static [&'static str],
}

pub const TOPICS: &[Topic] = &[
    Topic {
        subject: "Printer shows paper jam but tray is empty",
        case_type: Some("Problem"),
        queue: 0,
        customer: &[
            "Hello,\n\nOur LaserJet on the 3rd floor keeps showing \"Paper jam in tray 2\" although the tray is empty and we removed every sheet.\nWe already switched it off and on again.\n\nThanks,\n{name}",
            "Hi again,\n\nThe test page printed fine, but after about twenty pages the same jam message came back.\n\n{name}",
            "It has been fine for three days now. Thanks for the help!\n\n{name}",
        ],
        agent: &[
            "Hi {first},\n\nThanks for reaching out. Please clear the print queue, open the rear access door and check for torn pieces of paper near the fuser, then send a test page.\n\nKind regards,\nAcme Support",
            "Hi {first},\n\nThat pattern points to a worn pickup roller sensor. We pushed a firmware update that recalibrates it; please let us know if it happens again.\n\nBest,\nAcme Support",
        ],
    },
    Topic {
        subject: "Invoice charged twice for March",
        case_type: Some("Question"),
        queue: 1,
        customer: &[
            "Hello,\n\nOur invoice INV-20931 lists the Premium plan twice (2 x $249.00). We only have one subscription. Can you correct this?\n\nRegards,\n{name}",
            "Thank you, the credit note arrived. All good on our side.\n\n{name}",
        ],
        agent: &[
            "Dear {first},\n\nYou are right, the renewal ran twice because of a retry on our side. I have issued a credit of $249.00; the corrected invoice is attached.\n\nKind regards,\nBilling Team",
        ],
    },
    Topic {
        subject: "Cannot log in after password reset",
        case_type: Some("Problem"),
        queue: 0,
        customer: &[
            "Hi,\n\nI reset my password this morning but the login page still says \"Your password has expired\". I tried Chrome and Firefox.\n\n{name}",
            "Still the same, even in a private window. I need access for the quarterly report today.\n\n{name}",
            "That worked, I'm in. Thank you!",
        ],
        agent: &[
            "Hi {first},\n\nSorry for the trouble. Could you clear your browser cookies for our domain and try once more?\n\nThanks,\nSupport",
            "Hi {first},\n\nOur engineers found a cached session that was not cleared after the password change. I have invalidated it; please log in again.\n\nBest,\nAcme Support",
        ],
    },
    Topic {
        subject: "Refund not received for order #48213",
        case_type: Some("Question"),
        queue: 1,
        customer: &[
            "Hello,\n\nI returned order #48213 two weeks ago and received the return confirmation, but the refund of €89.90 has not reached my card.\n\nBest regards,\n{name}",
            "Any update on this please?",
        ],
        agent: &[
            "Hello {first},\n\nThe refund was processed on our side yesterday; depending on your bank it can take five to seven business days to appear.\n\nKind regards,\nAcme Support",
        ],
    },
    Topic {
        subject: "Two-factor codes arrive too late",
        case_type: Some("Problem"),
        queue: 0,
        customer: &[
            "Hi,\n\nThe SMS codes for two-factor login arrive 3-4 minutes after I request them, by which time they have expired.\n\n{name}",
        ],
        agent: &[
            "Hi {first},\n\nI have reset your multi-factor enrolment. At your next login you can switch to the authenticator app, which does not depend on SMS delivery.\n\nRegards,\nSupport",
        ],
    },
    Topic {
        subject: "App crashes when opening reports",
        case_type: Some("Problem"),
        queue: 2,
        customer: &[
            "Hello,\n\nSince Tuesday's update the desktop app crashes as soon as I open any report. Log file attached.\n\n{name}",
            "Version 7.4.2 fixed it, thanks.",
        ],
        agent: &[
            "Hi {first},\n\nThanks for the log, it shows a crash in the chart renderer. This is fixed in version 7.4.2, released today; please update and let us know.\n\nBest,\nAcme Support",
        ],
    },
    Topic {
        subject: "Request to downgrade plan",
        case_type: None,
        queue: 1,
        customer: &[
            "Hi,\n\nWe would like to move from Premium to Standard from the next billing cycle. We are 6 users.\n\nThanks,\n{name}",
        ],
        agent: &[
            "Hi {first},\n\nDone: your plan changes to Standard on the 1st. The prorated difference will show on the next invoice.\n\nKind regards,\nBilling Team",
        ],
    },
    Topic {
        subject: "Package marked delivered but not received",
        case_type: Some("Problem"),
        queue: 0,
        customer: &[
            "Hello,\n\nTracking says the replacement unit was delivered on Friday, but nobody at reception received it.\n\n{name}",
        ],
        agent: &[
            "Hi {first},\n\nI opened an investigation with the carrier and dispatched a new unit with signature on delivery. Tracking: 1Z 999 AA1 01 2345 6784.\n\nBest,\nAcme Support",
        ],
    },
    Topic {
        subject: "Licence server connection error 0x80070005",
        case_type: Some("Problem"),
        queue: 2,
        customer: &[
            "Hi,\n\nAll our workstations show \"Unable to connect to the licence server (code 0x80070005)\" since this morning. Nobody can work.\n\n{name}",
            "Confirmed, everyone is back online.",
        ],
        agent: &[
            "Hi {first},\n\nYour licence key had been flagged after a hardware change. I have re-issued it and deactivated the old one; the workstations should reconnect within 10 minutes.\n\nRegards,\nEscalations",
        ],
    },
    Topic {
        subject: "Export file only contains header row",
        case_type: Some("Problem"),
        queue: 0,
        customer: &[
            "Hello,\n\nWhen I export the contacts list to CSV the file only contains the header row, although the list shows 1,204 contacts.\n\n{name}",
        ],
        agent: &[
            "Hi {first},\n\nThe export uses the list's saved filter, which excludes contacts without an owner. Please switch the filter to \"All contacts\" before exporting.\n\nThanks,\nSupport",
        ],
    },
];

pub const FIRST_NAMES: &[&str] = &[
    "Jane", "Omar", "Li", "Priya", "Lukas", "Sofia", "Mateo", "Aisha", "Tom", "Yuki", "Chloé",
    "Noah", "Fatima", "Erik", "Grace", "Diego",
];
pub const LAST_NAMES: &[&str] = &[
    "Doe", "Haddad", "Wei", "Sharma", "Becker", "Rossi", "García", "Okafor", "O'Brien", "Tanaka",
    "Martin", "Smith", "Khan", "Larsen", "Kim", "Silva",
];
pub const COMPANIES: &[&str] = &[
    "northwind.example",
    "contoso.example",
    "fabrikam.example",
    "tailspin.example",
    "globex.example",
];

/// Plain text → a simple HTML rendering like a mail client's (paragraphs, `<br>`, entities).
pub fn to_html(text: &str) -> String {
    let mut out = String::from("<html><body>");
    for para in text.split("\n\n") {
        out.push_str("<p>");
        let escaped = para
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('€', "&euro;")
            .replace('\n', "<br>");
        out.push_str(&escaped);
        out.push_str("</p>");
    }
    out.push_str(
        "<p style=\"color:#888\">Acme Support &middot; <a href=\"https://support.example.com\">support.example.com</a></p></body></html>",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_bodies_are_deterministic_and_long_enough() {
        for html in [false, true] {
            let a = pooled_body(42, 3000, html);
            assert_eq!(a, pooled_body(42, 3000, html));
            assert!(a.len() >= 2500, "{}", a.len());
            assert_ne!(a, pooled_body(43, 3000, html));
        }
        let h = pooled_body(7, 800, true);
        assert!(h.starts_with("<p>") && h.ends_with("</p>"), "{h}");
    }
}
