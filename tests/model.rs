//! Model-based property test: random programs of `set`, `get`, `reset` (right and wrong
//! tokens), `copy_context`, `clone`, `fork` (every `Inherit` policy), nested `run`, and the
//! `Context` views, run against the crate and against a reference model — a plain `HashMap`
//! copied on every copy — with every observation compared. proptest shrinks a failure to a
//! minimal program.
//!
//! `PROPTEST_CASES` sets the number of programs (default 4,000 here).

use std::collections::HashMap;

use contextvars::{Context, ContextVar, Inherit, ResetError, Token, copy_context};
use proptest::prelude::*;

const VARS: usize = 4;
const DEFAULT: u32 = 100;
const FORK_DELTA: u32 = 1_000;

static SHARE: ContextVar<u32> = ContextVar::new("share");
static WITH_DEFAULT: ContextVar<u32> = ContextVar::with_default("with_default", || DEFAULT);
static FORKED: ContextVar<u32> =
    ContextVar::new("forked").inherit(Inherit::Fork(|v| v + FORK_DELTA));
static HIDDEN: ContextVar<u32> = ContextVar::new("hidden").inherit(Inherit::None);

fn var(i: usize) -> &'static ContextVar<u32> {
    [&SHARE, &WITH_DEFAULT, &FORKED, &HIDDEN][i % VARS]
}

#[derive(Debug, Clone)]
enum Op {
    Set(usize, u32),
    Get(usize),
    With(usize),
    /// Reset the `n`th live token through variable `var` (maybe not the token's own).
    Reset {
        token: usize,
        var: usize,
    },
    CopyContext,
    Clone(usize),
    Fork(usize),
    /// Enter snapshot `n` and run the nested ops in it.
    Run(usize, Vec<Op>),
    Inspect(usize),
    InspectCurrent,
}

fn op() -> impl Strategy<Value = Op> {
    let leaf = prop_oneof![
        4 => (0..VARS, 0..50u32).prop_map(|(v, x)| Op::Set(v, x)),
        2 => (0..VARS).prop_map(Op::Get),
        1 => (0..VARS).prop_map(Op::With),
        3 => (0..8usize, 0..VARS).prop_map(|(token, var)| Op::Reset { token, var }),
        1 => Just(Op::CopyContext),
        1 => (0..6usize).prop_map(Op::Clone),
        1 => (0..6usize).prop_map(Op::Fork),
        1 => (0..6usize).prop_map(Op::Inspect),
        1 => Just(Op::InspectCurrent),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        (0..6usize, prop::collection::vec(inner, 0..8)).prop_map(|(i, ops)| Op::Run(i, ops))
    })
}

/// The reference: a context is a map and an identity; copying clones the map.
#[derive(Clone, Debug, Default)]
struct ModelContext {
    id: u64,
    values: HashMap<usize, u32>,
}

struct ModelToken {
    var: usize,
    old: Option<u32>,
    context: u64,
}

/// Both worlds side by side. Snapshots are `None` while entered (Rust's `&mut` forbids touching
/// an entered context, where Python raises).
struct World {
    real_snapshots: Vec<Option<Context>>,
    model_snapshots: Vec<Option<ModelContext>>,
    real_tokens: Vec<Token<u32>>,
    model_tokens: Vec<ModelToken>,
    current: ModelContext,
    next_id: u64,
}

impl World {
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn model_get(&self, v: usize) -> Option<u32> {
        self.current
            .values
            .get(&v)
            .copied()
            .or((v == 1).then_some(DEFAULT))
    }

    fn model_fork(&mut self, from: &ModelContext) -> ModelContext {
        let mut values = from.values.clone();
        if let Some(x) = values.get_mut(&2) {
            *x += FORK_DELTA;
        }
        values.remove(&3);
        ModelContext {
            id: self.fresh_id(),
            values,
        }
    }

    fn check_view(real: &Context, model: &ModelContext) -> Result<(), TestCaseError> {
        prop_assert_eq!(real.len(), model.values.len());
        prop_assert_eq!(real.is_empty(), model.values.is_empty());
        for v in 0..VARS {
            let expected = model.values.get(&v).copied();
            prop_assert_eq!(real.get(var(v)).map(|x| *x), expected);
            prop_assert_eq!(real.contains(var(v)), expected.is_some());
        }
        let mut seen: Vec<(&str, u32)> = real
            .iter()
            .map(|(k, value)| (k.name(), *value.downcast_ref::<u32>().unwrap()))
            .collect();
        seen.sort();
        let mut expected: Vec<(&str, u32)> = model
            .values
            .iter()
            .map(|(v, x)| (var(*v).name(), *x))
            .collect();
        expected.sort();
        prop_assert_eq!(seen, expected);
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Set(v, x) => {
                let token = var(*v).set(*x);
                let old = self.current.values.insert(*v, *x);
                prop_assert_eq!(token.old_value().map(|a| **a), old);
                self.real_tokens.push(token);
                self.model_tokens.push(ModelToken {
                    var: *v,
                    old,
                    context: self.current.id,
                });
            }
            Op::Get(v) => {
                prop_assert_eq!(var(*v).get().map(|x| *x), self.model_get(*v));
                prop_assert_eq!(var(*v).is_set(), self.current.values.contains_key(v));
            }
            Op::With(v) => {
                let seen = var(*v).with(|x| x.copied());
                prop_assert_eq!(seen, self.model_get(*v));
            }
            Op::Reset { token, var: v } => {
                if self.real_tokens.is_empty() {
                    return Ok(());
                }
                let i = token % self.real_tokens.len();
                let real = self.real_tokens.swap_remove(i);
                let model = self.model_tokens.swap_remove(i);
                let expected = if model.var != *v {
                    Err(ResetError::WrongVar)
                } else if model.context != self.current.id {
                    Err(ResetError::WrongContext)
                } else {
                    match model.old {
                        Some(old) => self.current.values.insert(model.var, old),
                        None => self.current.values.remove(&model.var),
                    };
                    Ok(())
                };
                prop_assert_eq!(var(*v).reset(real), expected);
            }
            Op::CopyContext => {
                self.real_snapshots.push(Some(copy_context()));
                let copy = ModelContext {
                    id: self.fresh_id(),
                    values: self.current.values.clone(),
                };
                self.model_snapshots.push(Some(copy));
            }
            Op::Clone(i) | Op::Fork(i) => {
                let n = self.real_snapshots.len();
                if n == 0 {
                    return Ok(());
                }
                let i = i % n;
                let (Some(real), Some(model)) = (&self.real_snapshots[i], &self.model_snapshots[i])
                else {
                    return Ok(()); // entered: cannot be touched
                };
                let (real, model) = (real.clone(), model.clone());
                let (real, model) = if matches!(op, Op::Fork(_)) {
                    (real.fork(), self.model_fork(&model))
                } else {
                    let id = self.fresh_id();
                    (real, ModelContext { id, ..model })
                };
                self.real_snapshots.push(Some(real));
                self.model_snapshots.push(Some(model));
            }
            Op::Run(i, ops) => {
                let n = self.real_snapshots.len();
                if n == 0 {
                    return Ok(());
                }
                let i = i % n;
                let (Some(mut real), Some(model)) = (
                    self.real_snapshots[i].take(),
                    self.model_snapshots[i].take(),
                ) else {
                    return Ok(());
                };
                let outer = std::mem::replace(&mut self.current, model);
                let result = real.run(|| ops.iter().try_for_each(|op| self.apply(op)));
                let model = std::mem::replace(&mut self.current, outer);
                Self::check_view(&real, &model)?;
                self.real_snapshots[i] = Some(real);
                self.model_snapshots[i] = Some(model);
                result?;
            }
            Op::Inspect(i) => {
                let n = self.real_snapshots.len();
                if n == 0 {
                    return Ok(());
                }
                if let (Some(real), Some(model)) =
                    (&self.real_snapshots[i % n], &self.model_snapshots[i % n])
                {
                    Self::check_view(real, model)?;
                }
            }
            Op::InspectCurrent => Self::check_view(&Context::current(), &self.current)?,
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_crate_behaves_like_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut world = World {
            real_snapshots: vec![],
            model_snapshots: vec![],
            real_tokens: vec![],
            model_tokens: vec![],
            current: ModelContext { id: 0, values: HashMap::new() },
            next_id: 0,
        };
        // Each program starts in a fresh context of its own.
        let mut root = Context::new();
        world.current.id = world.fresh_id();
        root.run(|| {
            for op in &ops {
                world.apply(op)?;
            }
            World::check_view(&Context::current(), &world.current)
        })?;
    }
}
