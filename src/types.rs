//! The words every layer shares: which biometric a record is, the decision bands and the
//! decisions they give, and the direction of a punch. A leaf: it imports nothing of the
//! crate, so the store, the matchers and the front ends can all name these without
//! depending on one another.

use serde::{Deserialize, Serialize};

/// A count as a person reads it: "1 reference", "3 references", "2 punches", never
/// "3 reference(s)". Every noun Vouch counts is regular: "es" after a hiss, else "s".
pub fn counted<N: std::fmt::Display + PartialEq + From<u8>>(count: N, noun: &str) -> String {
    let plural = if count == N::from(1) {
        ""
    } else if ["s", "x", "ch", "sh"].iter().any(|end| noun.ends_with(end)) {
        "es"
    } else {
        "s"
    };
    format!("{count} {noun}{plural}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Face,
    Signature,
}

impl Modality {
    pub const ALL: [Modality; 2] = [Modality::Face, Modality::Signature];

    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Face => "face",
            Modality::Signature => "signature",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three outcomes of a verification: accept, send to a person, reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Review,
    Reject,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Accept, Decision::Review, Decision::Reject];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Review => "review",
            Decision::Reject => "reject",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accept at `high` or above, reject below `low`, review in between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    pub low: f32,
    pub high: f32,
}

impl Bands {
    pub fn decide(&self, score: f32) -> Decision {
        if score >= self.high {
            Decision::Accept
        } else if score < self.low {
            Decision::Reject
        } else {
            Decision::Review
        }
    }

    /// `0 <= low <= high <= 1`, both finite: anything else would accept or reject
    /// everyone without saying so.
    pub fn is_valid(&self) -> bool {
        (0.0..=1.0).contains(&self.low) && (0.0..=1.0).contains(&self.high) && self.low <= self.high
    }

    /// Both thresholds moved by a person's offset (positive is stricter), kept in [0, 1]
    /// so the result is still valid bands.
    pub fn shifted(&self, offset: f32) -> Bands {
        Bands {
            low: (self.low + offset).clamp(0.0, 1.0),
            high: (self.high + offset).clamp(0.0, 1.0),
        }
    }
}

/// What every template of one model must be: `len` finite values whose first
/// `norm_of_first` form a vector with a norm in `norm`. Anything else read back (an
/// empty blob, a 64-value embedding, NaNs, a zero vector) is refused, never compared.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateShape {
    pub len: usize,
    pub norm_of_first: usize,
    pub norm: std::ops::RangeInclusive<f32>,
}

impl TemplateShape {
    /// Why `values` cannot be a template of this shape, if it cannot.
    pub fn check(&self, values: &[f32]) -> Result<(), String> {
        if values.len() != self.len {
            return Err(format!(
                "it has {} values where the model makes {}",
                values.len(),
                self.len
            ));
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!("value {at} is not a finite number"));
        }
        let norm = values[..self.norm_of_first]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt();
        if !self.norm.contains(&norm) {
            return Err(format!(
                "its norm is {norm:.4}, outside {:.2}..={:.2}",
                self.norm.start(),
                self.norm.end()
            ));
        }
        Ok(())
    }
}

/// A check-in or a check-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PunchKind {
    In,
    Out,
}

impl PunchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PunchKind::In => "in",
            PunchKind::Out => "out",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [PunchKind::In, PunchKind::Out]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for PunchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_reads_as_a_person_says_it() {
        assert_eq!(counted(1usize, "reference"), "1 reference");
        assert_eq!(counted(0usize, "reference"), "0 references");
        assert_eq!(counted(12usize, "reference"), "12 references");
        assert_eq!(counted(2u8, "approval"), "2 approvals");
        assert_eq!(counted(1i64, "audit row"), "1 audit row");
        assert_eq!(counted(1usize, "punch"), "1 punch");
        assert_eq!(counted(3usize, "punch"), "3 punches");
    }

    #[test]
    fn bands_split_scores_three_ways_and_refuse_nonsense() {
        let bands = Bands {
            low: 0.45,
            high: 0.55,
        };
        assert_eq!(bands.decide(0.9), Decision::Accept);
        assert_eq!(bands.decide(0.5), Decision::Review);
        assert_eq!(bands.decide(0.1), Decision::Reject);
        assert!(bands.is_valid());
        for bad in [(0.6, 0.5), (-0.1, 0.5), (0.2, 1.5), (f32::NAN, 0.5)] {
            assert!(
                !Bands {
                    low: bad.0,
                    high: bad.1
                }
                .is_valid()
            );
        }
    }

    #[test]
    fn a_template_must_have_the_models_shape() {
        let shape = TemplateShape {
            len: 4,
            norm_of_first: 2,
            norm: 0.99..=1.01,
        };
        assert!(shape.check(&[0.6, 0.8, 5.0, -3.0]).is_ok());
        for bad in [
            vec![],
            vec![0.6, 0.8, 5.0],
            vec![0.0, 0.0, 1.0, 1.0],
            vec![0.6, 0.8, f32::NAN, 0.0],
            vec![0.6, 0.8, 5.0, 0.0, 0.0],
        ] {
            assert!(shape.check(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn words_round_trip() {
        for m in Modality::ALL {
            assert_eq!(Modality::parse(m.as_str()), Some(m));
        }
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(PunchKind::parse("out"), Some(PunchKind::Out));
        assert_eq!(PunchKind::parse("OUT"), None);
    }
}

/// What an operator account may do. A database without operators is a single-user desk
/// where everything is allowed; once one exists, every change is made by someone logged
/// in whose role allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The kiosk screen only: check-ins.
    Kiosk,
    /// The signature desk and enrollment.
    Clerk,
    /// Everything: deletions, settings, training, models, operators, approvals.
    Supervisor,
    /// Reads only: the audit log, reports, exports.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Kiosk, Role::Clerk, Role::Supervisor, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Kiosk => "kiosk",
            Role::Clerk => "clerk",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Supervisor => true,
            Role::Kiosk => matches!(permission, CheckIn),
            Role::Clerk => matches!(permission, CheckIn | Enroll | Verify),
            Role::Auditor => matches!(permission, Report),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of work a role is allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// A kiosk punch.
    CheckIn,
    /// Enrolling people and their references.
    Enroll,
    /// 1:1 and 1:N checks that record a decision (the signature desk, `verify`).
    Verify,
    /// The audit log, attendance and decision reports, exports.
    Report,
    /// Deleting people, importing records and backups, re-embedding, key rotation.
    Administer,
    /// Proposing and approving changes of bands, repeat window and active model.
    Govern,
    /// Training runs.
    Train,
    /// Adding, disabling and resetting operator accounts.
    ManageOperators,
}

impl Permission {
    pub fn describe(self) -> &'static str {
        match self {
            Permission::CheckIn => "check in",
            Permission::Enroll => "enroll people",
            Permission::Verify => "verify and record decisions",
            Permission::Report => "read reports and exports",
            Permission::Administer => "delete, import or re-key",
            Permission::Govern => "propose or approve changes",
            Permission::Train => "train models",
            Permission::ManageOperators => "manage operators",
        }
    }
}
