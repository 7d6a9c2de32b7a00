"""The built-in methods' stage and reads, so that `--help` lists them without importing torch.

Generated from the method classes by scripts/method_table.py; do not edit (a test checks it).
"""

BUILT_IN: dict[str, tuple[str, tuple[str, ...]]] = {
    'bcp': ('finetune', (
        'ema_decay',
        'labeled_warmup',
        'warmup_mixing',
        'unlabeled_weight',
    )),
    'cps': ('finetune', (
        'pseudo_threshold',
        'lambda_max',
        'rampup',
    )),
    'gcl-lcl-pretrain': ('pretrain', (
        'temperature',
    )),
    'ideal': ('finetune', (
        'pseudo_threshold',
        'lambda_max',
        'rampup',
        'perturb1',
        'perturb2',
        'unlabeled_weight',
        'confidence',
        'mixing',
        'weak_to_strong',
    )),
    'ideal-pretrain': ('pretrain', (
        'temperature',
        'head',
        'dense_level',
        'momentum_key',
        'global_weight',
    )),
    'mean-teacher': ('finetune', (
        'lambda_max',
        'rampup',
        'ema_decay',
    )),
    'supervised': ('finetune', ()),
    'unimatch': ('finetune', (
        'confidence',
    )),
}
