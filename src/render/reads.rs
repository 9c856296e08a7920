//! What a template reads of its context: every path it names, as a [`Need`] (see
//! [`crate::needs`]).
//!
//! A path that is printed, passed to a helper or tested by `if`/`unless`/`with` is read whole.
//! `each` reads only the shape of what it walks (its elements or members), and its body reads
//! relative to each element. `../` is resolved against every enclosing context and `@root`
//! against the root. What cannot be followed (a custom block helper, an inline partial, a
//! partial named at run time) reads the whole context, so the analysis can only keep too much.

use handlebars::template::{
    DecoratorTemplate, HelperTemplate, Parameter, Template, TemplateElement,
};
use handlebars::{Handlebars, Path, PathSeg};

use crate::needs::{Need, Step};

/// How deep partials may include partials before the analysis gives up (and reads all).
const MAX_DEPTH: usize = 16;

/// Adds what `t` reads, rendered against the context root, to `need`.
pub fn template(hb: &Handlebars<'static>, t: &Template, need: &mut Need) {
    Walk { hb, need, depth: 0 }.template(t, &mut vec![Vec::new()]);
}

struct Walk<'a> {
    hb: &'a Handlebars<'static>,
    need: &'a mut Need,
    depth: usize,
}

impl Walk<'_> {
    fn template(&mut self, t: &Template, stack: &mut Vec<Vec<Step>>) {
        for e in &t.elements {
            self.element(e, stack);
        }
    }

    fn element(&mut self, e: &TemplateElement, stack: &mut Vec<Vec<Step>>) {
        match e {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                self.expression(h, stack)
            }
            TemplateElement::HelperBlock(h) => self.block(h, stack),
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                self.partial(d, stack)
            }
            // Inline partials and decorators: not followed.
            _ => self.everything(),
        }
    }

    /// `{{path}}` or `{{helper args..}}`: every path named is read whole.
    fn expression(&mut self, h: &HelperTemplate, stack: &mut Vec<Vec<Step>>) {
        if h.params.is_empty() && h.hash.is_empty() {
            // `{{name}}` is a helper without arguments or a path: take it as a path.
            self.param(&h.name, stack);
        } else if let Parameter::Subexpression(_) | Parameter::Path(_) = &h.name {
            self.param(&h.name, stack);
        }
        self.arguments(h, stack);
    }

    fn arguments(&mut self, h: &HelperTemplate, stack: &mut Vec<Vec<Step>>) {
        for p in &h.params {
            self.param(p, stack);
        }
        for p in h.hash.values() {
            self.param(p, stack);
        }
    }

    fn param(&mut self, p: &Parameter, stack: &mut Vec<Vec<Step>>) {
        match p {
            Parameter::Path(path) => self.read(path, stack, true),
            Parameter::Name(name) => match Path::parse(name) {
                Ok(path) => self.read(&path, stack, true),
                Err(_) => self.everything(),
            },
            Parameter::Literal(_) => {}
            Parameter::Subexpression(s) => match s.as_element() {
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    self.expression(h, stack)
                }
                other => self.element(other, stack),
            },
            _ => self.everything(),
        }
    }

    fn block(&mut self, h: &HelperTemplate, stack: &mut Vec<Vec<Step>>) {
        let name = match &h.name {
            Parameter::Name(n) => n.as_str(),
            _ => "",
        };
        match name {
            "each" => {
                let bases = match h.params.first() {
                    Some(Parameter::Path(p)) if h.block_param.is_none() => {
                        // Every element or member is walked (an object's keys are `@key`);
                        // the body says what of each is read.
                        let bases = self.resolve(p, stack);
                        for b in &bases {
                            let mut each = b.clone();
                            each.push(Step::Each);
                            self.need.add(&each, false);
                        }
                        bases
                    }
                    Some(p) => {
                        // A computed list, or block parameters: read whole.
                        self.param(p, stack);
                        vec![stack.last().cloned().unwrap_or_default()]
                    }
                    None => Vec::new(),
                };
                for p in h.params.iter().skip(1) {
                    self.param(p, stack);
                }
                for p in h.hash.values() {
                    self.param(p, stack);
                }
                if let Some(t) = &h.template {
                    for mut base in bases {
                        base.push(Step::Each);
                        stack.push(base);
                        self.template(t, stack);
                        stack.pop();
                    }
                }
            }
            "with" => {
                self.arguments(h, stack);
                let base = match h.params.first() {
                    Some(Parameter::Path(p)) => self.resolve(p, stack).into_iter().next(),
                    _ => None,
                };
                if let Some(t) = &h.template {
                    stack.push(base.unwrap_or_else(|| stack.last().cloned().unwrap_or_default()));
                    self.template(t, stack);
                    stack.pop();
                }
            }
            "if" | "unless" => {
                self.arguments(h, stack);
                if let Some(t) = &h.template {
                    self.template(t, stack);
                }
            }
            _ => {
                // A block helper may hand its body any part of the context: all of it.
                self.arguments(h, stack);
                let here = stack.last().cloned().unwrap_or_default();
                self.need.add(&here, true);
                if let Some(t) = &h.template {
                    self.template(t, stack);
                }
            }
        }
        if let Some(t) = &h.inverse {
            self.template(t, stack);
        }
    }

    fn partial(&mut self, d: &DecoratorTemplate, stack: &mut Vec<Vec<Step>>) {
        let found = match &d.name {
            Parameter::Name(n) => self.hb.get_template(n),
            _ => None,
        };
        let Some(t) = found.filter(|_| self.depth < MAX_DEPTH) else {
            return self.everything();
        };
        for p in d.hash.values() {
            self.param(p, stack);
        }
        let base = match d.params.first() {
            Some(Parameter::Path(p)) => self.resolve(p, stack).into_iter().next(),
            Some(other) => {
                self.param(other, stack);
                None
            }
            None => None,
        };
        stack.push(base.unwrap_or_else(|| stack.last().cloned().unwrap_or_default()));
        self.depth += 1;
        self.template(t, stack);
        self.depth -= 1;
        stack.pop();
        if let Some(block) = &d.template {
            self.template(block, stack);
        }
    }

    /// Records a path as read.
    fn read(&mut self, path: &Path, stack: &[Vec<Step>], whole: bool) {
        for p in self.resolve(path, stack) {
            self.need.add(&p, whole);
        }
    }

    /// Where a path may point from the root: one place, or one per enclosing context for `../`.
    fn resolve(&mut self, path: &Path, stack: &[Vec<Step>]) -> Vec<Vec<Step>> {
        let Path::Relative((segs, _)) = path else {
            // `@index`, `@key` and friends: not the context.
            return Vec::new();
        };
        let (mut root, mut up) = (false, false);
        let mut steps = Vec::new();
        for s in segs {
            match s {
                PathSeg::Named(n) => steps.push(Step::Key(n.clone())),
                // The grammar's rule is not public; its name is.
                PathSeg::Ruled(r) => match format!("{r:?}").as_str() {
                    "path_root" => root = true,
                    "path_up" => up = true,
                    _ => {}
                },
                _ => {
                    self.everything();
                    return Vec::new();
                }
            }
        }
        let bases: Vec<&[Step]> = if root {
            vec![&[]]
        } else if up {
            stack.iter().map(Vec::as_slice).collect()
        } else {
            vec![stack.last().map_or(&[][..], Vec::as_slice)]
        };
        bases
            .into_iter()
            .map(|b| b.iter().cloned().chain(steps.iter().cloned()).collect())
            .collect()
    }

    fn everything(&mut self) {
        self.need.add(&[], true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What of `ctx` survives the analysis of `text`.
    fn kept(text: &str, ctx: &Value) -> Value {
        let mut hb = Handlebars::new();
        hb.register_template_string("p", "{{name}} {{../title}}")
            .unwrap();
        let t = Template::compile(text).unwrap();
        let mut need = Need::new();
        template(&hb, &t, &mut need);
        need.compile().parse(ctx.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn paths_helpers_and_blocks() {
        let ctx = json!({
            "payload": {
                "ref": "r", "forced": {"x": 1, "y": 2},
                "repository": {"full_name": "o/r", "id": 1},
                "commits": [{"id": "a", "url": "u", "author": {"name": "n", "email": "e"}}],
                "sender": {"login": "s", "id": 2},
                "unused": [1, 2, 3],
            },
            "event": "push",
        });
        let t = "{{#if payload.forced}}!{{/if}}{{md payload.repository.full_name}}\
                 {{#each payload.commits}}{{short_sha id}} {{md (truncate author.name 3)}}\
                 {{../payload.sender.login}}{{/each}}{{event}}";
        assert_eq!(
            kept(t, &ctx),
            json!({
                "payload": {
                    "forced": {"x": 1, "y": 2},
                    "repository": {"full_name": "o/r"},
                    "commits": [{"id": "a", "author": {"name": "n"}}],
                    "sender": {"login": "s"},
                },
                "event": "push",
            })
        );
    }

    #[test]
    fn what_cannot_be_followed_keeps_everything() {
        let ctx = json!({"payload": {"a": 1, "b": {"c": 2}}});
        for t in [
            "{{json this}}",
            "{{json payload}}",
            "{{#each payload}}{{@key}}{{this}}{{/each}}",
            "{{#custom payload.a}}{{/custom}}",
            "{{> (lookup payload \"a\")}}",
            "{{#*inline \"x\"}}{{payload.a}}{{/inline}}",
        ] {
            assert_eq!(kept(t, &ctx), ctx, "{t}");
        }
    }

    #[test]
    fn with_partials_root_and_locals() {
        let ctx = json!({"payload": {"pr": {"name": "n", "x": 1}, "title": "t", "y": 2}});
        assert_eq!(
            kept("{{#with payload.pr}}{{name}}{{/with}}", &ctx),
            json!({"payload": {"pr": {"name": "n", "x": 1}}})
        );
        assert_eq!(
            kept(
                "{{#each payload.pr}}{{@key}}{{@root.payload.title}}{{/each}}",
                &ctx
            ),
            json!({"payload": {"pr": {"name": "n", "x": 1}, "title": "t"}})
        );
        // The partial reads `name` in the context it is given, and `../title` above it (at
        // the root, where there is none).
        assert_eq!(
            kept("{{> p payload.pr}}", &ctx),
            json!({"payload": {"pr": {"name": "n"}}})
        );
        assert_eq!(
            kept(
                "{{#each payload.pr}}{{> p}}{{/each}}",
                &json!({"payload": {"pr": [{"name": "n", "x": 1}], "title": "t"}})
            ),
            json!({"payload": {"pr": [{"name": "n"}]}})
        );
    }
}
