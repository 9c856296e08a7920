//! `cardwire completions <shell>` and `cardwire man`: the shell completions and the man page,
//! from the command line's own definition (clap's generators), so that they never drift from it.
//!
//! In: the shell, and the command line's definition (`Cli::command()`, passed in by the
//! caller). Out: the script or the roff page on stdout. Guarantees: every command and option
//! of the definition is in both.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

/// `completions`' arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    pub shell: clap_complete::Shell,
}

/// Prints the completions of `shell` for the command line `cli`.
pub fn completions(args: &CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cli, "cardwire", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the man page (roff) of the command line `cli`, its subcommands' sections included.
pub fn man(cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cli.clone()).render(&mut out)?;
    // Each command's own usage and options, as sections of the one page.
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_string();
        writeln!(out, ".SH \"CARDWIRE {}\"", name.to_uppercase())?;
        let page = clap_mangen::Man::new(sub.clone().name(format!("cardwire {name}")));
        page.render_description_section(&mut out)?;
        page.render_synopsis_section(&mut out)?;
        page.render_options_section(&mut out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
