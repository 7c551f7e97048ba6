//! Which node owns a room: rendezvous (highest random weight) hashing over the live nodes.
//!
//! Every node scores `hash(node, room)` and the highest score owns the room. Losing a node moves
//! only the rooms it owned (each to its second-best node); adding one moves to it only the rooms
//! it now scores best on, about `1/n` of them. The hash is written here (FNV-1a, then a 64-bit
//! finalizer) rather than taken from `std`, whose hasher may change between Rust releases: two
//! nodes built by different compilers must agree on every owner.

/// The owner of `room` among `nodes` (by node id), or `None` when there are none.
pub fn owner<'a>(room: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes
        .into_iter()
        .map(|node| (score(node, room), node))
        // Ties (astronomically rare) go to the smaller id, so every node picks the same one.
        .max_by(|(a, na), (b, nb)| a.cmp(b).then_with(|| nb.cmp(na)))
        .map(|(_, node)| node)
}

/// The weight of `node` for `room`.
pub fn score(node: &str, room: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for b in node.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    // A separator no id contains, so ("ab", "c") and ("a", "bc") differ.
    h = (h ^ 0xff).wrapping_mul(FNV_PRIME);
    for b in room.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// MurmurHash3's 64-bit finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Vec<String> {
        (0..6000).map(|i| format!("workspace:{i:08x}")).collect()
    }

    #[test]
    fn every_node_agrees_and_no_nodes_means_no_owner() {
        let nodes = ["n-a", "n-b", "n-c"];
        for room in rooms().iter().take(100) {
            let mut reversed = nodes;
            reversed.reverse();
            assert_eq!(
                owner(room, nodes),
                owner(room, reversed),
                "order of the list"
            );
        }
        assert_eq!(owner("workspace:1", []), None);
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // Pinned to values from an independent implementation (FNV-1a 64, 0xff separator,
        // MurmurHash3 fmix64): a change here would move rooms between nodes of two versions.
        assert_eq!(
            score("node-1", "ws:0190aa5e-8c51-7000-8000-000000000001"),
            0xe066_afc9_5a56_9b0b
        );
        assert_eq!(score("node-2", "session:x"), 0xfbb0_01b3_e4a9_98d2);
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }

    #[test]
    fn rooms_spread_evenly() {
        let nodes = ["n-a", "n-b", "n-c"];
        let rooms = rooms();
        for node in nodes {
            let share = rooms
                .iter()
                .filter(|r| owner(r, nodes) == Some(node))
                .count();
            // 2000 expected; a binomial standard deviation is about 37.
            assert!((1800..=2200).contains(&share), "{node} owns {share}");
        }
    }

    #[test]
    fn losing_a_node_moves_only_its_rooms() {
        let before = ["n-a", "n-b", "n-c"];
        let after = ["n-a", "n-c"];
        for room in rooms() {
            let was = owner(&room, before);
            let now = owner(&room, after);
            if was != Some("n-b") {
                assert_eq!(was, now, "{room} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn a_new_node_takes_about_its_share_and_only_that() {
        let before = ["n-a", "n-b", "n-c"];
        let after = ["n-a", "n-b", "n-c", "n-d"];
        let rooms = rooms();
        let mut moved = 0;
        for room in &rooms {
            let (was, now) = (owner(room, before), owner(room, after));
            if was != now {
                assert_eq!(now, Some("n-d"), "{room} moved between old nodes");
                moved += 1;
            }
        }
        // A quarter of 6000 is 1500.
        assert!((1300..=1700).contains(&moved), "{moved} rooms moved");
    }
}
