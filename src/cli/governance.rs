//! Operator accounts and governed changes from the command line.

use std::process::ExitCode;

use clap::Subcommand;

use anyhow::Context as _;

use super::{open_as, open_to_read_as, print_report, session};
use crate::context::Context;
use crate::store::{Proposal, ProposalStatus, Session};
use crate::types::{Permission, Role};
use crate::workflow::governance;

#[derive(Subcommand, Debug)]
pub enum OperatorsCommand {
    /// Add an account; its password or PIN from $VOUCH_NEW_PASSWORD, else a prompt. On a
    /// database without accounts the first must be a supervisor.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Every account: role, whether active, failed logins, lock-out.
    List {
        #[arg(long)]
        json: bool,
    },
    Disable {
        name: String,
    },
    /// Enable an account again (also lifts a lock-out).
    Enable {
        name: String,
    },
    /// A new password or PIN ($VOUCH_NEW_PASSWORD, else a prompt): a supervisor for
    /// anyone, an operator for themselves.
    SetSecret {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProposalsCommand {
    /// Every proposal, newest first, with its evidence.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Approve and apply a pending proposal (a supervisor other than its proposer, unless
    /// the site needs one approval). A model change re-embeds the references first.
    Approve {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending proposal (a supervisor), or withdraw your own.
    Reject {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Save a proposal's evidence as an HTML report with its plots (default:
    /// `reports/proposal-ID.html` beside the database).
    Report {
        id: i64,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn new_secret(name: &str) -> anyhow::Result<String> {
    secret_from(
        "VOUCH_NEW_PASSWORD",
        &format!("New password or PIN for {name}: "),
    )
}

/// A new secret from the environment variable `variable`, else typed twice at a prompt.
pub(super) fn secret_from(variable: &str, prompt: &str) -> anyhow::Result<String> {
    if let Ok(secret) = std::env::var(variable) {
        return Ok(secret);
    }
    let first = rpassword::prompt_password(prompt)?;
    let again = rpassword::prompt_password("The same again: ")?;
    anyhow::ensure!(first == again, "the two entries differ: nothing changed");
    Ok(first)
}

pub fn operators(command: OperatorsCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        OperatorsCommand::List { json } => {
            let (store, _) = open_as(context, Permission::ManageOperators)?;
            let operators = store.operators()?;
            print_report(&operators, json, |operators| {
                if operators.is_empty() {
                    return "no operator accounts: this database is a single-user desk".into();
                }
                operators
                    .iter()
                    .map(|o| {
                        format!(
                            "{} ({}){}{}",
                            o.name,
                            o.role,
                            if o.active { "" } else { ", disabled" },
                            o.locked_until
                                .as_deref()
                                .map(|until| format!(", locked until {until}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        OperatorsCommand::Add { name, role } => {
            let mut store = context.open_store()?;
            let by = session(context, &mut store)?;
            let secret = new_secret(&name)?;
            let added = store.add_operator(&name, role, &secret, &by)?;
            println!("operator {} added as {}", added.name, added.role);
            Ok(ExitCode::SUCCESS)
        }
        OperatorsCommand::Disable { ref name } | OperatorsCommand::Enable { ref name } => {
            let active = matches!(command, OperatorsCommand::Enable { .. });
            let name = name.clone();
            let (mut store, by) = open_as(context, Permission::ManageOperators)?;
            store.set_operator_active(&name, active, &by)?;
            println!(
                "operator {name} {}",
                if active { "enabled" } else { "disabled" }
            );
            Ok(ExitCode::SUCCESS)
        }
        OperatorsCommand::SetSecret { name } => {
            let mut store = context.open_store()?;
            let by = session(context, &mut store)?;
            store.set_operator_secret(&name, &new_secret(&name)?, &by)?;
            println!("the password or PIN of {name} is changed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn proposals(command: ProposalsCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ProposalsCommand::List { json } => {
            let (store, _) = open_as(context, Permission::Report)?;
            let proposals = store.proposals()?;
            print_report(&proposals, json, |proposals| {
                if proposals.is_empty() {
                    return "no proposals".into();
                }
                proposals
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        ProposalsCommand::Approve { id, json } => {
            let (mut store, by) = open_as(context, Permission::Govern)?;
            let proposal = approve(context, &mut store, &by, id)?;
            print_proposal(&proposal, json)
        }
        ProposalsCommand::Report { id, out } => {
            let store = open_to_read_as(context, Permission::Report)?;
            let written = match out {
                Some(path) => {
                    let html = governance::proposal_report(&store.proposal(id)?)?;
                    std::fs::write(&path, html)
                        .with_context(|| format!("writing {}", path.display()))?;
                    path
                }
                None => governance::save_proposal_report(&store, id, &context.reports_dir())?,
            };
            println!("wrote {}", written.display());
            Ok(ExitCode::SUCCESS)
        }
        ProposalsCommand::Reject { id, json } => {
            let mut store = context.open_store()?;
            let by = session(context, &mut store)?;
            print_proposal(&store.reject(id, &by)?, json)
        }
    }
}

fn approve(
    context: &Context,
    store: &mut crate::store::Store,
    by: &Session,
    id: i64,
) -> anyhow::Result<Proposal> {
    super::train::with_reembedding(context, |reembedding| {
        governance::approve(store, by, id, reembedding)
    })
}

fn describe(proposal: &Proposal) -> String {
    let decided = match (&proposal.status, &proposal.decided_by) {
        (ProposalStatus::Pending, _) => "pending".to_string(),
        (status, by) => format!(
            "{} by {}",
            format!("{status:?}").to_lowercase(),
            by.as_deref().unwrap_or("?")
        ),
    };
    format!(
        "#{} {} (proposed by {} at {}; {decided})",
        proposal.id,
        proposal.change.describe(),
        proposal.proposed_by,
        proposal.proposed_at
    )
}

/// What happened to a proposal, for the person who made or decided it.
pub fn print_proposal(proposal: &Proposal, json: bool) -> anyhow::Result<ExitCode> {
    print_report(proposal, json, |p| match p.status {
        ProposalStatus::Pending => format!(
            "{}\nwaits for a second supervisor: vouch proposals approve {}",
            describe(p),
            p.id
        ),
        _ => describe(p),
    })
}
