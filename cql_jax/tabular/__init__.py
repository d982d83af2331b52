"""Exact tabular CQL on finite MDPs, and the paper's Section 3 theorems as computable quantities.

`mdp` builds random MDPs, behaviour policies, datasets and the counts-based empirical operator;
`cql` runs Eq. 1 / Eq. 2 policy evaluation and CQL(H) (Eq. 4); `bounds` computes the thresholds
and margins of Theorems 3.1, 3.2 and 3.4.
"""
from cql_jax.tabular.bounds import (Theorem31, Theorem32, bellman_error, bellman_error_bound, gap,
                                    gap_expansion, theorem_3_1, theorem_3_2)
from cql_jax.tabular.cql import (EQ1, EQ2, CQLHStep, cql_evaluation, cql_h, cql_h_step, penalty,
                                 softmax_policy, state_values, true_q)
from cql_jax.tabular.mdp import (EmpiricalMDP, FiniteMDP, TabularDataset, empirical_mdp,
                                 exact_operator, random_mdp, random_policy, sample_dataset)
