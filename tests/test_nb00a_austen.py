"""Jane Austen's novels in exp.nb_00a: R's lazy-load database (a gzip-compressed .rdx index, an
.rdb of size-prefixed zlib entries) read by RLazyLoadSource, on small databases written here with
rdata's writer; each malformed file is refused by name; the novels' DataFiles fetched through
find_file from a .deb built here (never downloaded), checked and cached as UTF-8 text. Every test
has its own empty cache and no $DLF_DATA."""
import gzip, hashlib, struct, subprocess, sys, zlib
from pathlib import Path

import numpy as np
import pytest
from rdata.conversion import convert_python_to_r_data
from rdata.unparser import unparse_data

from exp import nb_00a
from exp.nb_00a import (AUSTEN_FILES, AUSTEN_PACKAGE, AUSTEN_TITLES, DataFile, DebSource,
                        RLazyLoadSource, UrlSource, austen_novels, find_file)

pytestmark = pytest.mark.usefixtures('isolated')

LINES = {'emma': ['EMMA', '', 'By Jane Austen', 'a pound: £5, café'],
         'persuasion': ['PERSUASION', '', '', 'Sir Walter Elliot, of Kellynch Hall']}


def r_bytes(obj):
    "`obj` in R's XDR serialization, as R's lazy-load database stores it (uncompressed)."
    return unparse_data(convert_python_to_r_data(obj))


def entry(raw):
    "An .rdb entry: the 4-byte big-endian size of `raw`, then `raw` zlib-compressed."
    return struct.pack('>I', len(raw)) + zlib.compress(raw)


def write_db(folder, objects, compressed=True, index=None, cut=0):
    """An Rdata.rdx/Rdata.rdb pair in `folder` holding `objects` ({name: lines, or an array});
    `cut` bytes are taken off the end of each entry, the index agreeing."""
    folder.mkdir(parents=True, exist_ok=True)
    db, offsets = b'', {}
    for name, value in objects.items():
        if not isinstance(value, np.ndarray): value = np.array(value, dtype=object)
        e = entry(r_bytes(value))
        e = e[:len(e) - cut]
        offsets[name] = np.array([len(db), len(e)], dtype=np.int32)
        db += e
    index = index or {'variables': offsets, 'references': {}, 'compressed': compressed}
    (folder/'Rdata.rdx').write_bytes(gzip.compress(r_bytes(index)))
    (folder/'Rdata.rdb').write_bytes(db)
    return folder/'Rdata.rdx', folder/'Rdata.rdb'


def source(rdx, rdb, name):
    return RLazyLoadSource(UrlSource(rdx.as_uri()), UrlSource(rdb.as_uri()), name)


def served(src):
    "The text `src` serves."
    with src.open() as (f, size):
        data = f.read()
    assert len(data) == size
    return data.decode('utf-8')


@pytest.fixture
def db(tmp_path):
    return write_db(tmp_path/'db', LINES)


def test_each_vector_reads_back_as_its_lines_joined(db):
    for name, lines in LINES.items():
        assert served(source(*db, name)) == '\n'.join(lines)


def test_found_checked_and_cached_as_utf8_text(db):
    text = '\n'.join(LINES['emma'])
    df = DataFile('austen_emma.txt', hashlib.sha256(text.encode()).hexdigest(),
                  (source(*db, 'emma'),))
    path = find_file(df)
    assert path == nb_00a.cache_dir()/'austen_emma.txt'
    assert path.read_bytes() == text.encode('utf-8')


def test_wrong_checksum_is_refused_and_nothing_cached(db):
    df = DataFile('austen_emma.txt', '0' * 64, (source(*db, 'emma'),))
    with pytest.raises(FileNotFoundError) as e:
        find_file(df)
    assert 'austen_emma.txt' in str(e.value) and 'checksum mismatch' in str(e.value)
    assert not (nb_00a.cache_dir()/'austen_emma.txt').exists()


def test_unknown_object_name_names_the_index_and_what_it_holds(db):
    with pytest.raises(KeyError) as e:
        served(source(*db, 'lady_susan'))
    msg = str(e.value)
    assert db[0].as_uri() in msg and "'lady_susan'" in msg and 'emma, persuasion' in msg


@pytest.mark.parametrize('data, message', [
    (b'not gzip at all', 'not a gzip-compressed R index'),
    (gzip.compress(b'hello'), 'not an R object in XDR serialization'),
    (gzip.compress(b'X\n\x00\x00'), 'malformed R object'),
    (gzip.compress(r_bytes(np.array(['a', 'b'], dtype=object))), 'no list named "variables"')])
def test_bad_index_is_refused_naming_it(db, data, message):
    db[0].write_bytes(data)
    with pytest.raises(ValueError, match=message) as e:
        served(source(*db, 'emma'))
    assert db[0].as_uri() in str(e.value)


def test_other_compression_than_zlib_is_refused(tmp_path):
    db = write_db(tmp_path/'db', LINES, compressed=3)   # R's code for xz
    with pytest.raises(ValueError, match='only zlib') as e:
        served(source(*db, 'emma'))
    assert db[0].as_uri() in str(e.value)


@pytest.mark.parametrize('cut', [1, 10])
def test_truncated_entry_is_refused_naming_the_data_file(db, cut):
    rdx, rdb = db
    rdb.write_bytes(rdb.read_bytes()[:-cut])   # the last entry, persuasion's, loses its end
    with pytest.raises(ValueError, match='cut short') as e:
        served(source(rdx, rdb, 'persuasion'))
    assert rdb.as_uri() in str(e.value)
    assert served(source(rdx, rdb, 'emma')) == '\n'.join(LINES['emma'])   # the others still read


@pytest.mark.parametrize('cut', [2, 40])   # the checksum trailer only; some of the data too
def test_entry_cut_short_where_the_index_agrees_is_refused(tmp_path, cut):
    rdx, rdb = write_db(tmp_path/'db', LINES, cut=cut)
    with pytest.raises(ValueError, match='cut short or corrupt') as e:
        served(source(rdx, rdb, 'emma'))
    assert rdb.as_uri() in str(e.value)


def test_entry_whose_size_word_disagrees_is_refused(db):
    rdx, rdb = db
    data = bytearray(rdb.read_bytes()); data[3] ^= 1   # emma's entry is first
    rdb.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='its header says') as e:
        served(source(rdx, rdb, 'emma'))
    assert rdb.as_uri() in str(e.value)


def test_entry_that_is_not_zlib_is_refused(db):
    rdx, rdb = db
    data = bytearray(rdb.read_bytes()); data[4:6] = b'\0\0'   # emma's zlib header
    rdb.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='not a zlib stream') as e:
        served(source(rdx, rdb, 'emma'))
    assert rdb.as_uri() in str(e.value)


@pytest.mark.parametrize('value, message', [
    (np.array([1, 2, 3], dtype=np.int32), 'not a plain character vector'),
    (['a', None, 'c'], r'missing values \(NA\)')])
def test_anything_but_a_character_vector_without_na_is_refused(tmp_path, value, message):
    db = write_db(tmp_path/'db', {'emma': value})
    with pytest.raises(ValueError, match=message) as e:
        served(source(*db, 'emma'))
    assert db[1].as_uri() in str(e.value) and '(emma)' in str(e.value)


def test_titles_in_alphabetical_order_each_with_its_files():
    assert len(AUSTEN_TITLES) == 6 and list(AUSTEN_TITLES) == sorted(AUSTEN_TITLES)
    assert tuple(AUSTEN_FILES) == AUSTEN_TITLES
    for df in AUSTEN_FILES.values():
        installed, deb = df.sources   # R's installed folder first, then Debian's package
        assert isinstance(installed.rdb, UrlSource) and isinstance(deb.rdb, DebSource)
        assert deb.rdb.package == AUSTEN_PACKAGE and deb.rdb.member.endswith('data/Rdata.rdb')


@pytest.fixture
def offline(tmp_path, monkeypatch, make_deb, answer_apt):
    """The novels' DataFiles rebuilt for two stand-in novels: no R folder, and apt-get download
    answered by a .deb laid out like Debian's (counted)."""
    rdx, rdb = write_db(tmp_path/'db', LINES)
    member = './usr/lib/R/site-library/janeaustenr/data/'
    deb = make_deb(tmp_path/'r-cran-janeaustenr_all.deb',
                   {member + 'Rdata.rdx': rdx.read_bytes(), member + 'Rdata.rdb': rdb.read_bytes()})
    downloads = answer_apt(deb)
    monkeypatch.setattr(nb_00a, '_AUSTEN_SYSTEM', tmp_path/'no-r-folder')
    texts = {title: '\n'.join(LINES[name]) for title, name in
             [('Emma', 'emma'), ('Persuasion', 'persuasion')]}
    files = {title: nb_00a._austen_file(name, hashlib.sha256(texts[title].encode()).hexdigest())
             for title, name in [('Emma', 'emma'), ('Persuasion', 'persuasion')]}
    monkeypatch.setattr(nb_00a, 'AUSTEN_FILES', files)
    return texts, downloads


def test_novels_from_the_deb_then_from_the_cache(offline):
    texts, downloads = offline
    assert austen_novels() == texts
    assert downloads == [AUSTEN_PACKAGE]   # one download serves every novel
    names = sorted(p.name for p in nb_00a.cache_dir().iterdir())
    assert names == ['austen_emma.txt', 'austen_persuasion.txt']
    nb_00a._DEBS.clear()
    assert austen_novels() == texts
    assert downloads == [AUSTEN_PACKAGE]   # the second time from the cache


def test_importing_00a_leaves_rdata_and_pandas_unloaded():
    code = ('import sys, exp.nb_00a; '
            'print([m for m in ("rdata", "pandas", "xarray") if m in sys.modules])')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == '[]'
