//! The `rules` fuzz target (see the crate's opening).

fn main() {
    cardwire_fuzz::main(cardwire_fuzz::targets::rules);
}
