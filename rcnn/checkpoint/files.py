"""File names of a checkpoint ``<prefix>`` / number (the one place that spells them; no MXNet).

::

    <prefix>-symbol.json          deploy graph (shared by every epoch)
    <prefix>-%04d.params          parameters of epoch / checkpoint number N
    <prefix>-%04d.states          optimizer (updater) states of N
    <prefix>-%04d.train.json      training record of N (rcnn.checkpoint.record)
    <prefix>-%04d.commit          present while N's files are being renamed into place
    <prefix>-recipe.json          the recipe inference needs (rcnn.recipe), shared by every N
"""

__all__ = ['checkpoint_name', 'symbol_path', 'params_path', 'states_path', 'train_record_path',
           'commit_marker_path', 'recipe_path', 'checkpoint_files']


def checkpoint_name(prefix, epoch):
    """``<prefix>-%04d``: how a checkpoint is named in messages and derived file names."""
    return '%s-%04d' % (prefix, int(epoch))


def symbol_path(prefix):
    """``<prefix>-symbol.json``."""
    return '%s-symbol.json' % prefix


def params_path(prefix, epoch):
    """``<prefix>-%04d.params``."""
    return checkpoint_name(prefix, epoch) + '.params'


def states_path(prefix, epoch):
    """``<prefix>-%04d.states``."""
    return checkpoint_name(prefix, epoch) + '.states'


def train_record_path(prefix, epoch):
    """``<prefix>-%04d.train.json``."""
    return checkpoint_name(prefix, epoch) + '.train.json'


def commit_marker_path(prefix, epoch):
    """``<prefix>-%04d.commit``."""
    return checkpoint_name(prefix, epoch) + '.commit'


def recipe_path(prefix):
    """``<prefix>-recipe.json``."""
    return '%s-recipe.json' % prefix


def checkpoint_files(prefix, number):
    """Paths of checkpoint ``number``: dict with params, symbol, states, record."""
    return {'params': params_path(prefix, number), 'symbol': symbol_path(prefix),
            'states': states_path(prefix, number), 'record': train_record_path(prefix, number)}
