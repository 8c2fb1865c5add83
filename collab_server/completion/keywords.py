"""The reserved words (and a few built-in names) the generic provider offers, per language id.

Every id of `collab_server.languages.LANGUAGES` has an entry; prose languages have none. SQL is
matched without regard to case and inserted in the case the user started typing.
"""

from __future__ import annotations

from collections.abc import Mapping

_C = """
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while bool true false NULL size_t uint8_t uint16_t uint32_t uint64_t
int8_t int16_t int32_t int64_t
include define ifdef ifndef endif pragma
"""

_CPP = (
    _C
    + """
alignas alignof and asm catch class concept consteval constexpr constinit const_cast co_await
co_return co_yield decltype delete dynamic_cast explicit export friend mutable namespace new
noexcept not nullptr operator or override final private protected public reinterpret_cast
requires static_assert static_cast template this thread_local throw try typeid typename using
virtual wchar_t std::string std::vector std::map std::unique_ptr std::shared_ptr std::move
"""
)

_JAVASCRIPT = """
await break case catch class const continue debugger default delete do else export extends
false finally for function if import in instanceof let new null return static super switch this
throw true try typeof undefined var void while with yield async of get set
console document window globalThis Promise Array Object String Number Boolean Map Set JSON Math
Error Symbol BigInt
"""

_TYPESCRIPT = (
    _JAVASCRIPT
    + """
abstract any as asserts bigint boolean declare enum implements infer interface is keyof
module namespace never number object private protected public readonly satisfies string symbol
type unique unknown Record Partial Readonly Pick Omit
"""
)

KEYWORDS: Mapping[str, tuple[str, ...]] = {
    language: tuple(dict.fromkeys(words.split()))
    for language, words in {
        "python": """
False None True and as assert async await break class continue def del elif else except
finally for from global if import in is lambda nonlocal not or pass raise return try while
with yield match case print len range enumerate isinstance self
""",
        "javascript": _JAVASCRIPT,
        "typescript": _TYPESCRIPT,
        "go": """
break case chan const continue default defer else fallthrough for func go goto if import
interface map package range return select struct switch type var bool byte complex64 complex128
error float32 float64 int int8 int16 int32 int64 rune string uint uint8 uint16 uint32 uint64
uintptr true false iota nil append cap close copy delete len make new panic print println
recover any comparable
""",
        "rust": """
as async await break const continue crate dyn else enum extern false fn for if impl in let
loop match mod move mut pub ref return self Self static struct super trait true type unsafe use
where while bool char i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64 str String Vec
Option Some None Result Ok Err Box println! format! vec! panic! assert! assert_eq!
""",
        "java": """
abstract assert boolean break byte case catch char class const continue default do double else
enum extends final finally float for goto if implements import instanceof int interface long
native new package private protected public return short static strictfp super switch
synchronized this throw throws transient try void volatile while var record sealed permits yield
true false null String Object Integer List Map System
""",
        "c": _C,
        "cpp": _CPP,
        "html": """
html head body title meta link script style div span p a img ul ol li table thead tbody tr th
td form input button label select option textarea section article header footer nav main aside
h1 h2 h3 h4 h5 h6 pre code strong em br hr iframe canvas svg template slot
class id href src alt type name value rel charset lang style width height placeholder disabled
checked
""",
        "css": """
align-items background background-color border border-radius bottom box-shadow box-sizing color
cursor display flex flex-direction font-family font-size font-weight gap grid
grid-template-columns height justify-content left line-height margin max-width min-height opacity
overflow padding position right text-align top transform transition width z-index
absolute relative fixed sticky block inline inline-block none auto inherit initial important
solid transparent center space-between media import keyframes important
""",
        "markdown": "",
        "sql": """
SELECT FROM WHERE AND OR NOT INSERT INTO VALUES UPDATE SET DELETE CREATE TABLE ALTER DROP INDEX
VIEW JOIN INNER LEFT RIGHT FULL OUTER CROSS ON AS GROUP BY ORDER HAVING LIMIT OFFSET DISTINCT
UNION ALL EXISTS IN BETWEEN LIKE IS NULL PRIMARY KEY FOREIGN REFERENCES DEFAULT UNIQUE CHECK
CONSTRAINT CASE WHEN THEN ELSE END COUNT SUM AVG MIN MAX COALESCE CAST WITH RETURNING
BEGIN COMMIT ROLLBACK TRANSACTION INTEGER TEXT VARCHAR BOOLEAN TIMESTAMP SERIAL
""",
        "plaintext": "",
    }.items()
}

CASE_INSENSITIVE: frozenset[str] = frozenset({"sql"})


def keywords_of(language: str) -> tuple[str, ...]:
    """The keywords of `language`; none for an id we do not know."""
    return KEYWORDS.get(language, ())
