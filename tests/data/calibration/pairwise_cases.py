"""Regenerates pairwise_cases.json: expected pairwise figures computed with scikit-learn,
scipy and numpy, independently of the Rust code under test.

    pip install scikit-learn scipy numpy
    python3 pairwise_cases.py > pairwise_cases.json
"""
import json

import numpy as np
from scipy import stats
from sklearn.metrics import cohen_kappa_score

ABOUT = ("Pairwise figures (AI vs human) with expected values computed independently in Python: "
         "scikit-learn 1.9.1 cohen_kappa_score(human, ai, weights=None|linear|quadratic, labels=full scale), "
         "scipy 1.17 pearsonr/spearmanr/kendalltau (tau-b), numpy 2.4 for MAE, RMSE, bias, SMD "
         "(pooled SD sqrt((s_ai^2+s_h^2)/2), ddof=1), exact and adjacent agreement. "
         "Regenerate: python3 pairwise_cases.py > pairwise_cases.json (pip install scikit-learn scipy numpy).")

cases = []


def case(name, ai, hu, scale, source):
    a = np.array(ai, float)
    h = np.array(hu, float)
    d = a - h
    labels = list(range(scale[0], scale[1] + 1))

    def k(w):
        v = cohen_kappa_score(h.astype(int), a.astype(int), weights=w, labels=labels)
        return None if np.isnan(v) else float(v)

    def c(f):
        v = f(a, h)[0]
        return None if np.isnan(v) else float(v)

    sd = np.sqrt((a.var(ddof=1) + h.var(ddof=1)) / 2)
    cases.append(dict(name=name, source=source, scale=scale, ai=ai, human=hu, expected=dict(
        n=len(ai), qwk=k("quadratic"), kappa_linear=k("linear"), kappa=k(None),
        pearson=c(stats.pearsonr), spearman=c(stats.spearmanr), kendall_tau_b=c(stats.kendalltau),
        mae=float(np.mean(abs(d))), rmse=float(np.sqrt(np.mean(d * d))), bias=float(np.mean(d)),
        smd=float((a.mean() - h.mean()) / sd), exact=float(np.mean(a == h)),
        adjacent=float(np.mean(abs(d) <= 1)))))


case("mixed_1_5", [1, 2, 3, 4, 5, 3, 2, 4, 5, 1, 3, 3], [1, 2, 2, 4, 4, 3, 3, 5, 5, 2, 3, 1], [1, 5],
     "sklearn 1.x cohen_kappa_score(human, ai, weights=None|'linear'|'quadratic', labels=1..5); scipy.stats pearsonr/spearmanr/kendalltau; numpy for the rest")
case("unused_middle_level", [1, 2, 4, 5, 5, 1, 2, 4], [1, 2, 5, 5, 4, 2, 1, 4], [1, 5],
     "as above; labels=1..5 although 3 never occurs (observed-only labels would give qwk 0.8, linear 0.6)")
case("tie_heavy_1_4", [1, 2, 2, 3, 3, 3, 4, 4, 4, 1, 2, 3, 3, 2], [2, 2, 3, 3, 3, 4, 4, 4, 4, 1, 1, 3, 2, 2], [1, 4],
     "as above; many ties on both sides")
case("zero_based_0_3_negative", [0, 1, 3, 3, 2, 0, 1, 2], [3, 2, 0, 1, 1, 3, 3, 0], [0, 3],
     "as above; strong disagreement, negative kappas")

print('{"about": ' + json.dumps(ABOUT) + ',')
print('"cases": [')
print(',\n'.join(' ' + json.dumps(c) for c in cases))
print(']}')
