//! `if:` expressions in CEL, for what the `when` map cannot say, e.g.
//! `payload.ref == "refs/heads/" + payload.repository.default_branch && size(payload.commits) > 0`.
//!
//! An expression is compiled once when rules load; a syntax error or a variable other than the
//! ones below is a load-time problem. At match time it sees `payload`, `headers` (lower-case
//! names), `event`, `action` and `source`, and must evaluate to `true`; an error while
//! evaluating (a missing field, a wrong type) counts as not matching and is explained.

use std::sync::{Arc, LazyLock};

use crate::event::Event;

/// The variables an expression may use.
pub const VARIABLES: &[&str] = &[
    "payload", "headers", "event", "action", "source", "event_id",
];

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// A compiled expression.
#[derive(Clone)]
pub struct Expr {
    /// The expression as written.
    pub source: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles an expression, refusing unknown variables.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = ENV
            .compile(source)
            .map_err(|e| format!("CEL does not compile: {}", e.to_string().trim()))?;
        let refs = program.references();
        if let Some(bad) = refs
            .variables()
            .into_iter()
            .find(|v| !VARIABLES.contains(v))
        {
            let hint = crate::yaml::closest(bad, VARIABLES)
                .map(|b| format!(" (did you mean `{b}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "CEL uses the unknown variable `{bad}`{hint}; available: {}",
                VARIABLES.join(", ")
            ));
        }
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
        })
    }

    /// Evaluates against an event's variables: Ok(true) when it holds.
    pub fn eval(&self, vars: &Vars<'_>) -> Result<bool, String> {
        let ctx = vars.context()?;
        match self.program.execute(ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("evaluated to {other:?}, not a boolean")),
            Err(e) => Err(format!("evaluation failed: {e}")),
        }
    }
}

/// An event's CEL variables, converted from JSON once per event and only when an expression
/// needs them.
pub struct Vars<'a> {
    event: &'a Event,
    context: std::cell::OnceCell<Result<cel::Context<'static, 'static>, String>>,
}

impl<'a> Vars<'a> {
    /// The variables of `event`, not converted yet.
    pub fn new(event: &'a Event) -> Self {
        Self {
            event,
            context: std::cell::OnceCell::new(),
        }
    }

    fn context(&self) -> Result<&cel::Context<'static, 'static>, String> {
        self.context
            .get_or_init(|| {
                let mut ctx = cel::Context::with_env(ENV.clone());
                let object = self
                    .event
                    .context()
                    .as_object()
                    .expect("the context is an object");
                for (name, value) in object {
                    let value = cel::to_value(value)
                        .map_err(|e| format!("payload not usable in CEL: {e}"))?;
                    ctx.add_variable_from_value(name.clone(), value);
                }
                Ok(ctx)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expressions_see_the_event() {
        let e = Event::for_test(
            "github",
            "push",
            json!({"ref": "refs/heads/main", "repository": {"default_branch": "main"}, "commits": [1, 2]}),
            &[("X-Hook", "7")],
        );
        let vars = Vars::new(&e);
        let x = Expr::compile(r#"payload.ref == "refs/heads/" + payload.repository.default_branch && size(payload.commits) > 0"#).unwrap();
        assert_eq!(x.eval(&vars), Ok(true));
        assert_eq!(
            Expr::compile(r#"headers["x-hook"] == "7" && event == "push""#)
                .unwrap()
                .eval(&vars),
            Ok(true)
        );
        assert_eq!(
            Expr::compile("size(payload.commits) > 5")
                .unwrap()
                .eval(&vars),
            Ok(false)
        );
        assert!(Expr::compile("payload.nothing.deeper == 1")
            .unwrap()
            .eval(&vars)
            .is_err());
        assert!(Expr::compile("payload.ref")
            .unwrap()
            .eval(&vars)
            .unwrap_err()
            .contains("not a boolean"));
    }

    #[test]
    fn compile_errors() {
        assert!(Expr::compile("payload.ref ==")
            .unwrap_err()
            .starts_with("CEL does not compile"));
        let e = Expr::compile("paylod.ref == 'x'").unwrap_err();
        assert!(e.contains("did you mean `payload`"), "{e}");
    }
}
