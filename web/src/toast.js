// A short message at the bottom of the page, read out by screen readers (the element is a
// polite live region in the page's HTML).

let timer = 0

export function showToast (message) {
  const toast = document.getElementById('toast')
  toast.textContent = message
  toast.hidden = false
  clearTimeout(timer)
  timer = setTimeout(() => { toast.hidden = true }, 3000)
}
