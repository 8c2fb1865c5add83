// The languages a room can be in. The ids are the server's (collab_server/languages.py): a test
// checks that both lists agree. Each grammar is loaded on first use, so a room only downloads
// the one it shows.

export const DEFAULT_LANGUAGE = 'plaintext'

export const LANGUAGES = [
  { id: 'python', label: 'Python', extension: 'py', load: async () => (await import('@codemirror/lang-python')).python() },
  { id: 'javascript', label: 'JavaScript', extension: 'js', load: async () => (await import('@codemirror/lang-javascript')).javascript() },
  { id: 'typescript', label: 'TypeScript', extension: 'ts', load: async () => (await import('@codemirror/lang-javascript')).javascript({ typescript: true }) },
  { id: 'go', label: 'Go', extension: 'go', load: async () => (await import('@codemirror/lang-go')).go() },
  { id: 'rust', label: 'Rust', extension: 'rs', load: async () => (await import('@codemirror/lang-rust')).rust() },
  { id: 'java', label: 'Java', extension: 'java', load: async () => (await import('@codemirror/lang-java')).java() },
  { id: 'c', label: 'C', extension: 'c', load: async () => (await import('@codemirror/lang-cpp')).cpp() },
  { id: 'cpp', label: 'C++', extension: 'cpp', load: async () => (await import('@codemirror/lang-cpp')).cpp() },
  { id: 'html', label: 'HTML', extension: 'html', load: async () => (await import('@codemirror/lang-html')).html() },
  { id: 'css', label: 'CSS', extension: 'css', load: async () => (await import('@codemirror/lang-css')).css() },
  { id: 'markdown', label: 'Markdown', extension: 'md', load: async () => (await import('@codemirror/lang-markdown')).markdown() },
  { id: 'sql', label: 'SQL', extension: 'sql', load: async () => (await import('@codemirror/lang-sql')).sql() },
  { id: 'plaintext', label: 'Plain text', extension: 'txt', load: async () => [] }
]

/** The language with this id, or plain text for an id this page does not know. */
export function languageById (id) {
  return LANGUAGES.find((language) => language.id === id) ??
    LANGUAGES.find((language) => language.id === DEFAULT_LANGUAGE)
}

/** Fill a <select> with every language, `selected` chosen. */
export function fillLanguageSelect (select, selected = DEFAULT_LANGUAGE) {
  select.replaceChildren(...LANGUAGES.map(({ id, label }) => new Option(label, id, false, id === selected)))
}
