// Sends the page's form at once (the GitHub App flow's manifest, which a browser must POST
// to GitHub itself); without scripts, its button does the same.
document.getElementById("manifest-form")?.submit();
